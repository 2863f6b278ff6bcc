"""The built-in signature profiles as ``twisted.plugin`` plugins.

Each module-level object provides ``ISignatureProfile`` and ``IPlugin``, so
``getPlugins(ISignatureProfile, ntpauto.plugins)`` finds them exactly as it finds a third
party's profiles (see :mod:`ntpauto.pki.profiles`, interop.md 5.9).
"""

from __future__ import annotations

from ntpauto.pki import profiles as _profiles

rsa_md5 = _profiles.RSA_MD5
rsa_sha1 = _profiles.RSA_SHA1
rsa_sha224 = _profiles.RSA_SHA224
rsa_sha256 = _profiles.RSA_SHA256
rsa_sha384 = _profiles.RSA_SHA384
rsa_sha512 = _profiles.RSA_SHA512
dsa_sha1 = _profiles.DSA_SHA1
dsa_sha = _profiles.DSA_SHA
