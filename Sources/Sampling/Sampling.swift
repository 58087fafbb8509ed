// Sampling: filled in by its issue.
