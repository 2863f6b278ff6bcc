"""Pure NTP codecs with no state: timestamps, the header, extension-field framing, the MAC."""
