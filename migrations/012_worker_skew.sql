-- Each worker's clock against the database's (issue 19): seconds its host's clock is
-- ahead (negative: behind), measured at every heartbeat; shown in /api/stats. quaero
-- reads every time off the database's clock, so a skew is harmless; it is shown so an
-- operator can fix a host's NTP.
ALTER TABLE workers ADD COLUMN clock_skew DOUBLE PRECISION;
