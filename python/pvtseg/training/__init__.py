"""Training: datasets, the trainer (`pvtseg train`) and evaluation (`pvtseg eval`)."""
