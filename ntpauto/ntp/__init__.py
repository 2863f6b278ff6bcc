"""The NTP protocol machinery (RFC 5905): peer variables, filter, selection, discipline, clocks."""
