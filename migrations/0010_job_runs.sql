-- The scheduler's runs: one row per job and tick, so that however many schedulers run,
-- each tick of a job is claimed once. A run requested by hand is a row too, with the time
-- it was asked for as its tick. A row without finished_at is still to do: a scheduler runs
-- it holding the job's advisory lock, so a scheduler that dies leaves it to another.
CREATE TABLE job_runs (
    run_id       uuid        PRIMARY KEY,
    job          text        NOT NULL,
    tick         timestamptz NOT NULL,      -- the scheduled time, or when it was asked for
    manual       boolean     NOT NULL DEFAULT false,
    requested_by text,                      -- who asked, for a run by hand
    runner       text,                      -- host:pid of the scheduler that ran it last
    attempts     integer     NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    outcome      text,                      -- succeeded, failed
    counts       jsonb,                     -- what the run did, by the job's own measures
    error        text,
    UNIQUE (job, tick)
);

CREATE INDEX job_runs_pending_idx ON job_runs (job, tick) WHERE finished_at IS NULL;
CREATE INDEX job_runs_latest_idx ON job_runs (job, finished_at);
