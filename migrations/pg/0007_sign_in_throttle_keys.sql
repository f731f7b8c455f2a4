-- Sign-in throttling counts failures per key, not only per email: the pair of client address and email, the
-- address alone, and the email alone, each with its own limit. Counters of the old scheme are dropped (they
-- last fifteen minutes anyway).
DELETE FROM web_login_failures;
ALTER TABLE web_login_failures RENAME COLUMN email TO throttle_key;
