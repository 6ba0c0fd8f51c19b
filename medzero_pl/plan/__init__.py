"""Will a run fit? Per-rank memory predicted from the model's config and the run's settings (`python -m medzero_pl.plan`)."""
