"""Autokey public-key infrastructure: signature profiles, X.509 certificates, the certificate
cache and the ntp-keygen key files (RFC 5906 sections 6 and 10; interop.md 5.3, 5.6,
5.7, 5.9, 6.4 and 7).

Sans-I/O apart from reading and writing key files: nothing here imports ``twisted.internet``.

* :mod:`ntpauto.pki.profiles` -- ISignatureProfile implementations (RSA-MD5, ..., DSA-SHA1).
* :mod:`ntpauto.pki.certificates` -- parse, check, build and sign certificates.
* :mod:`ntpauto.pki.cache` -- the certificate cache and trail hiking.
* :mod:`ntpauto.pki.keyfiles` -- ``ntpkey_*`` files: read, write, find in the keys directory.
* :mod:`ntpauto.pki.legacy_x509` -- MD5/SHA-1 certificate signatures, raw TBS extensions.
* :mod:`ntpauto.pki.der` -- the one DER reader/writer (also the identity responses').
"""
