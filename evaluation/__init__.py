"""Scoring virtual stains: metrics, baselines and the Stain_Evaluation command."""
