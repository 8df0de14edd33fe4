"""patron: customer retention and membership for shops and chains."""
