"""Read models: what every worker folds from the logs for the API and the console."""
