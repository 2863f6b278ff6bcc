"""Network Time Security (RFC 8915) for NTPv4: NTS-KE over TLS 1.3 and the NTS extension fields.

Sans-I/O modules, each one responsibility:

====================  ================================================================
:mod:`.aead`          AEAD_AES_SIV_CMAC_256 (``cryptography``'s AESSIV) and the exporter's
                      label and contexts (RFC 8915 sections 4.3 and 5.1)
:mod:`.records`       NTS-KE records and messages: strict parsing, the server's answer,
                      the client's reading of it (section 4)
:mod:`.cookies`       the server's stateless cookies under rotating master keys that
                      workers and hosts can share (section 6)
:mod:`.fields`        the NTS extension fields in RFC 7822 framing (sections 5.3-5.6)
:mod:`.serving`       the server side of an NTS-protected request (section 5.7)
:mod:`.session`       an NTS client association: its keys, cookie jar, unique identifiers,
                      NTS NAKs and the need to re-key (sections 5.7, 9.1)
====================  ================================================================

The Twisted layer is thin: :mod:`.tls` (certificates and TLS options), :mod:`.ke_server` and
:mod:`.ke_client` (the NTS-KE connections, which move records in and out and export keys).
"""
