"""Sales: the one place that composes loyalty, wallet and offers at the till."""
