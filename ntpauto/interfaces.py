"""Every zope Interface of ntpauto: clocks, signature profiles and identity schemes.

Built-in implementations are found the same way third-party ones are, through
``twisted.plugin.getPlugins(Interface, ntpauto.plugins)``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IClock(Interface):
    """The NTP clock that stamps packets (RFC 5905 section 11.3).

    Separate from the reactor's clock, which only schedules timers.  ``step`` and
    ``adjust`` are called only when the clock discipline is enabled (``enable ntp``).
    """

    def now() -> float:
        """Current time as Unix seconds (float)."""

    def precision() -> int:
        """Clock precision as log2 seconds (e.g. -20 for about a microsecond)."""

    def step(offset: float) -> None:
        """Step the clock by ``offset`` seconds (RFC 5905 step_time)."""

    def adjust(offset: float) -> None:
        """Slew the clock by ``offset`` seconds (RFC 5905 adjust_time)."""


class ISignatureProfile(Interface):
    """A digest/signature profile: how Autokey values and certificates are signed.

    reference: interop.md section 5.9; the NID goes in the high half of the status word.
    """

    name = Attribute("Profile name as ntp-keygen spells it, e.g. 'RSA-MD5'.")
    nid = Attribute("OpenSSL NID of the signature algorithm, e.g. 8 for md5WithRSAEncryption.")
    key_type = Attribute("'RSA' or 'DSA'.")
    digest_name = Attribute("OpenSSL short name of the digest, e.g. 'md5'.")
    signature_name = Attribute("OpenSSL long name of the algorithm, e.g. 'md5WithRSAEncryption'.")

    def hash_algorithm():
        """Return a fresh ``cryptography`` HashAlgorithm instance for this profile."""

    def sign(private_key, data: bytes) -> bytes:
        """Sign ``data``; DSA signatures are re-drawn until they have the maximum DER length."""

    def verify(public_key, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies with ``public_key``."""

    def max_signature_size(public_key) -> int:
        """The signature length the reference insists on for this key."""


class IIdentityScheme(Interface):
    """One Autokey identity scheme bound to its keys (RFC 5906 appendices B-G).

    Client side: ``make_challenge`` then ``verify_response`` (after ``for_peer`` when the
    scheme needs something from the peer's certificate, as GQ does).  Server side:
    ``respond``.  TC and PC carry no challenge (``message_code`` 0): ``make_challenge`` and
    ``respond`` raise ValueError and ``verify_response`` is False.

    Filestamps (reference: interop.md 5.8): a request carries ``client_filestamp``, a
    response ``server_filestamp``; the requester checks the response's with
    ``accepts_filestamp``.

    Received values (both directions): every value received from the peer is checked for
    its range and group *before* any arithmetic with it or with a key (e.g. GQ: 1 < y < n - 1
    and gcd(y, n) = 1; IFF: 0 < y < q; MV: A and B in the order-q subgroup, not 1; the
    challenge: exactly the expected length, 0 < r < modulus).  Degenerate values such as 0,
    1, n - 1, the modulus, values at or above it, or multiples of a prime factor can make the
    check pass for any challenge or leak a key.  ``ntpauto.identity.common`` has the
    helpers: ``check_range``, ``check_unit``, ``check_subgroup`` raising
    ``IdentityValueError`` (a ValueError).
    """

    name = Attribute("Scheme name: 'tc', 'pc', 'iff', 'gq', 'mv' or a plugin's.")
    status_bit = Attribute("Host status-word bit advertising this scheme (0 for TC).")
    message_code = Attribute("Extension field code of its exchange (0 when it has none).")
    files = Attribute("Tuple of file names (ntpkey_* links) the scheme reads.")
    can_respond = Attribute("True when the server key is loaded.")
    can_challenge = Attribute("True when the client parameters are loaded.")
    server_filestamp = Attribute(
        "Filestamp of the server key file (the Filestamp of responses), or None.")
    client_filestamp = Attribute(
        "Filestamp of the client parameter file (the Filestamp of requests), or None.")

    def make_challenge() -> bytes:
        """Return a fresh challenge value to send in a request; ValueError without the client
        parameters."""

    def verify_response(challenge: bytes, response: bytes) -> bool:
        """True when ``response`` proves knowledge of the group key for ``challenge``.
        Every value decoded from the response is range and group checked before it is used;
        a value failing its check, like any malformed response, gives False (never an
        exception for bad input)."""

    def respond(challenge: bytes) -> bytes:
        """Build the response value for a client's challenge.  The challenge is range checked
        (length and value) before the server's secret touches it; ValueError when it fails
        the check or is malformed, or when the server key is not loaded (the responder sends
        an error response)."""

    def accepts_filestamp(filestamp: int) -> bool:
        """The requester's check of a response's Filestamp against ``client_filestamp``
        (reference: IFF and MV require equality, GQ at least the client's)."""

    def for_peer(certificate) -> IIdentityScheme:
        """The scheme to use with a peer whose trusted certificate is ``certificate`` (a
        ``ntpauto.pki.certificates.CertInfo``): GQ takes the peer's public key from its
        Subject Key Identifier; the other schemes return themselves."""


class IIdentitySchemeFactory(Interface):
    """Builds an identity scheme; registered as a twisted.plugin in ``ntpauto.plugins``.

    Modelled on ``twisted.cred.strcred.ICheckerFactory``.
    """

    scheme_name = Attribute("Name used on the command line and in ntp.conf.")
    help_text = Attribute("One paragraph describing the scheme.")
    argstring_format = Attribute("Format of the argument string, e.g. 'KEYSDIR:GROUP'.")
    status_bit = Attribute("Status-word bit of the schemes it builds (0 for TC).")
    message_code = Attribute("Extension field code of their exchange (0 when none).")

    def from_argstring(argstring: str) -> IIdentityScheme:
        """Build a scheme from ``--ident SCHEME:ARGS`` (``ARGS`` without the scheme name)."""

    def from_keysdir(keysdir: str, group: str, password=None) -> IIdentityScheme:
        """Build a scheme from the ntpkey_* files of ``group`` in ``keysdir``; ``password``
        decrypts the server key."""
