"""Authentication: symmetric keys (ntp.keys) and Autokey session keys, key lists and cookies."""
