"""ntpauto: an NTPv4 daemon with Autokey (RFC 5906) public-key authentication, on Twisted."""

__version__ = "0.1.0"
