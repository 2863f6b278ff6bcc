"""Protocol constants of the NTPv4 mitigation and discipline algorithms.

Values follow RFC 5905 appendix A.1.1 (global constants) and A.5.5.6 (clock discipline
parameters); where the reference implementation (ntpd 4.2.8) deliberately differs and the
difference matters, the ntpd value is used and the comment says so.

Units: seconds, seconds per second (frequency) or log2 seconds (poll, precision).
"""

from __future__ import annotations

# --- A.1.1 global constants -------------------------------------------------------------

#: Default system precision, log2 s (about a microsecond) when no clock tells us better.
PRECISION = -20
#: Minimum dispersion increment, s (RFC: .01; ntpd's "tos mindist" default is smaller).
MINDISP = 0.005
#: Maximum dispersion, s; also the dispersion of an empty or timed-out filter stage.
MAXDISP = 16.0
#: Distance threshold, s (RFC: 1; ntpd's "tos maxdist" default 1.5).
MAXDIST = 1.5
#: Leap indicator "unsynchronized" (alarm condition).
NOSYNC = 3
#: Maximum stratum ("infinity"); 16 is unsynchronized.
MAXSTRAT = 16
#: Minimum poll interval, log2 s (ntpd lets minpoll go down to 3, i.e. 8 s).
MINPOLL = 3
#: Maximum poll interval, log2 s (36.4 h).
MAXPOLL = 17
#: Frequency tolerance, s/s (15 ppm): the rate at which dispersion grows.
PHI = 15e-6
#: Clock filter register stages.
NSTAGE = 8
#: Maximum number of associations considered by the selection algorithm.
NMAX = 50
#: Minimum intersection survivors.
NSANE = 1
#: Minimum cluster survivors.
NMIN = 3
#: Minimum manycast survivors / maximum manycast candidates.
MINCLOCK = 3
MAXCLOCK = 10

# --- A.5.2 clock filter -----------------------------------------------------------------

#: Popcorn spike gate: a new offset more than SGATE peer jitters away is a spike.
SGATE = 3.0
#: Broadcast delay default, s.
BDELAY = 0.004

# --- A.5.5.6 clock discipline -----------------------------------------------------------

#: Step threshold, s.
STEPT = 0.128
#: Stepout threshold, s: how long an offset above STEPT must persist before a step.
WATCH = 900.0
#: Panic threshold, s: larger offsets are never corrected.
PANICT = 1000.0
#: PLL loop gain.  RFC 5905 A.5.5.6 prints 65536, a fixed-point scale that does not fit its
#: floating-point code (phase time constant of 48 days at poll 6); ntpd uses 16
#: (``CLOCK_PLL``), giving the time constant PLL * 2**poll = 1024 s at poll 6.
PLL = 16
#: FLL loop gain.
FLL = MAXPOLL + 1
#: Parameter averaging constant (exponential averages of jitter and wander).
AVG = 4
#: Compromise Allan intercept, s.
ALLAN = 1500
#: Poll-adjust hysteresis threshold.
LIMIT = 30
#: Maximum frequency correction, s/s (500 ppm).
MAXFREQ = 500e-6
#: Poll-adjust gate: offsets below PGATE times the clock jitter lengthen the poll.
PGATE = 4
