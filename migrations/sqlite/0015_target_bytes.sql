-- PostgreSQL's 0015 indexes leads.target in byte order for the dashboard's search and
-- paging. SQLite compares text byte by byte already (BINARY), so the unique index on
-- target serves them: nothing to add here; the number is kept the same on both backends.
SELECT 1;
