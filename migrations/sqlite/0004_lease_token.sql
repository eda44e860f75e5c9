-- An attempt's `runner_id` always held the lease token of the claim it was made under
-- (`host-pid-random/N`), not the runner's id: name it so.
ALTER TABLE attempts RENAME COLUMN runner_id TO lease_token;
