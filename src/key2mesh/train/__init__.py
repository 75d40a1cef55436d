"""Training: MoCap pre-training and label-free domain adaptation (WDGRL)."""
