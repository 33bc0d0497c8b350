"""MAP estimation of the θ field and Laplace-evidence hyperparameter selection."""
