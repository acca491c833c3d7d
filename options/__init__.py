"""Command-line options: flags shared by all drivers (base), plus training and testing flags.

Parsing runs in passes: the chosen ``--model`` and ``--dataset_mode`` add their own flags
before the final parse. Options are saved beside the checkpoints as text and JSON.
"""
