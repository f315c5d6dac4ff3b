"""Code both Colsum services need: settings, the task model and store, the broker topology."""
