"""Suite-wide Hypothesis settings. Its timing checks (a deadline per example, a health
check on slow data generation) measure the machine, not the code: on a shared 2-core
machine running a benchmark beside the suite they failed tests whose properties held.
The number of examples and everything else stay Hypothesis' defaults."""

from hypothesis import HealthCheck, settings

settings.register_profile("spendwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("spendwatch")
