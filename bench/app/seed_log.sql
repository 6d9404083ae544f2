-- Seeds a migrated rustlb database with a request log at scale, for bench/app/run.sh:
--   :rows log rows (default 10,000,000) spread evenly over the last :days days (default 7) for
--   three servers, in day partitions made here as the app's maintenance would have;
--   the request_stats rollup of those rows (minute rows for the last 48 hours only, as
--   maintenance leaves them) and hour rows back to 30 days, the first week repeated.
-- Latencies are 200-20,200 us, every 97th request a 500. Bounded: one INSERT per table.
--
--   psql -v ON_ERROR_STOP=1 -v rows=10000000 -f bench/app/seed_log.sql postgres://.../rustlb_bench
\if :{?rows}
\else
  \set rows 10000000
\endif
\if :{?days}
\else
  \set days 7
\endif
SET TIME ZONE 'UTC';
SET client_min_messages = warning;
TRUNCATE requests_log, request_stats;

-- requests_log_pYYYYMMDD, one UTC day each: the names migration::requests_log_days gives them.
SELECT format('CREATE TABLE IF NOT EXISTS requests_log_p%s PARTITION OF requests_log '
              'FOR VALUES FROM (%L) TO (%L)',
              to_char(d, 'YYYYMMDD'), d, d + interval '1 day')
FROM generate_series(date_trunc('day', now() - :days * interval '1 day'),
                     date_trunc('day', now()), interval '1 day') AS d
\gexec

INSERT INTO requests_log (server_id, method, path, status, duration_us, client_ip, request_id, created_at)
SELECT 'node-' || (g % 3 + 1), 'GET', '/server-info',
       CASE WHEN g % 97 = 0 THEN 500 ELSE 200 END,
       200 + (g::bigint * 7919) % 20000,
       '10.10.0.' || (g % 250 + 1),
       gen_random_uuid()::text,
       now() - :days * interval '1 day' + (g::float8 / :rows) * :days * interval '1 day'
FROM generate_series(1, :rows) AS g;

-- The rollup as the writer builds it: latency bucket floor(8 * log2(us)), histograms of
-- (bucket u8, count u32 big-endian) entries, rows in time order as the writer adds them.
INSERT INTO request_stats (server_id, span_seconds, bucket_start, requests, errors, duration_sum_us, latency_histogram)
SELECT server_id, span, start, SUM(n), SUM(e), SUM(d),
       decode(string_agg(lpad(to_hex(bucket), 2, '0') || lpad(to_hex(n), 8, '0'), '' ORDER BY bucket), 'hex')
FROM (SELECT server_id, span,
             date_trunc(CASE span WHEN 60 THEN 'minute' ELSE 'hour' END, created_at) AS start,
             LEAST(floor(8 * ln(duration_us::float8) / ln(2)), 255)::int AS bucket,
             count(*) AS n, count(*) FILTER (WHERE status >= 500) AS e, SUM(duration_us) AS d
      FROM requests_log CROSS JOIN (VALUES (60), (3600)) AS spans(span)
      WHERE span = 3600 OR created_at >= date_trunc('hour', now() - interval '48 hours')
      GROUP BY 1, 2, 3, 4) AS per_bucket
GROUP BY server_id, span, start
ORDER BY span, start, server_id;

INSERT INTO request_stats
SELECT server_id, span_seconds, bucket_start - k * :days * interval '1 day', requests, errors,
       duration_sum_us, latency_histogram
FROM request_stats, generate_series(1, ceil(30.0 / :days)::int) AS k
WHERE span_seconds = 3600
  AND bucket_start > date_trunc('hour', now() - :days * interval '1 day')
  AND bucket_start < date_trunc('hour', now())
  AND bucket_start - k * :days * interval '1 day' >= now() - interval '30 days'
ORDER BY 3, 1;

VACUUM ANALYZE requests_log;
VACUUM ANALYZE request_stats;
