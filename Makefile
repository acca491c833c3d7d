# The two commands of the README:  make demo  (set up + demo run)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_NAME ?= demo
# Small enough to finish in minutes on two CPU cores, large enough to learn the H&E palette.
# seg_cycle_gan reads the nucleus masks of datasets/demo/trainA_GT (--dataset_mode improvedunaligned).
DEMO_MODEL := --model seg_cycle_gan --netG resnet_6blocks --ngf 16 --ndf 16
DEMO_SCHEDULE := --n_epochs 10 --n_epochs_decay 10 --save_epoch_freq 5

.PHONY: demo test setup dataset results notebook

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c "import shutil; free = shutil.disk_usage('.').free / 1e9; free < 8 and print(f'WARNING: {free:.1f} GB free here; the environment needs about 7 GB')"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

dataset: setup datasets/demo/manifest.csv

datasets/demo/manifest.csv: scripts/make_demo_dataset.py
	$(BIN)/python scripts/make_demo_dataset.py --overwrite

# A second `make demo` continues the finished run (nothing to do) instead of refusing it.
demo: dataset
	$(BIN)/python train.py --dataroot datasets/demo --name $(DEMO_NAME) $(DEMO_MODEL) $(DEMO_SCHEDULE) \
		$$([ -f checkpoints/$(DEMO_NAME)/latest_net_G_A.pth ] && echo --continue_train)
	$(BIN)/python test.py --name $(DEMO_NAME) --epoch all
	$(BIN)/python evaluation/Stain_Evaluation.py --results_dir results/$(DEMO_NAME) --dataroot datasets/demo
	@echo
	@echo "Training page:  checkpoints/$(DEMO_NAME)/web/index.html"
	@echo "Test results:   results/$(DEMO_NAME)/index.html (one page per saved epoch and split)"
	@echo "Evaluation:     results/$(DEMO_NAME)/evaluation/report.html (realism and faithfulness, the chosen epoch, baselines)"

test: setup
	$(BIN)/python -m pytest -n 2

# The README's results table and image grid: every configuration of the ablation, two seeds each
# (about 40 minutes on two CPU cores); runs already evaluated are not redone.
results: dataset
	$(BIN)/python scripts/ablation.py

# demo.ipynb run top to bottom from an empty notebook_run/ and stored with its outputs (minutes on two CPU cores).
notebook: setup
	$(BIN)/python scripts/run_notebook.py --fresh

# The model colorize.py --name demo_pretrained uses without training (models/pretrained/demo_pretrained, committed):
# the demo configuration trained on the demo data, every saved epoch tested and evaluated, the chosen epoch's G_A
# bundled with its options, intensity rule and scores (about 10 minutes on two CPU cores). A finished run is reused.
PRETRAINED_NAME := demo_pretrained
.PHONY: pretrained
pretrained: dataset
	$(BIN)/python train.py --dataroot datasets/demo --name $(PRETRAINED_NAME) $(DEMO_MODEL) $(DEMO_SCHEDULE) \
		$$([ -f checkpoints/$(PRETRAINED_NAME)/latest_net_G_A.pth ] && echo --continue_train)
	$(BIN)/python test.py --name $(PRETRAINED_NAME) --epoch all
	$(BIN)/python evaluation/Stain_Evaluation.py --results_dir results/$(PRETRAINED_NAME) --dataroot datasets/demo
	$(BIN)/python scripts/bundle_model.py --name $(PRETRAINED_NAME) --dataroot datasets/demo \
		--output models/pretrained/$(PRETRAINED_NAME)
