-- What artifact freshness (M7) reads of a publication, stored as typed columns beside `data` (the writer fills them
-- from the validator's typed fields, storage.schema.STORED_FIELDS): the full SLI computation read them back out of
-- `data` for every publication in history, and reading `data` for ~2% of the events cost as much as decompressing
-- all of it (~0.9 of ~2 s at 10M stored events: docs/performance.md, thirty-fourth round). Existing rows get them
-- from their data; a stored value of the wrong shape becomes NULL (TRY_CAST), as the validator would never have
-- typed it.
ALTER TABLE events ADD COLUMN artifact VARCHAR;
ALTER TABLE events ADD COLUMN sla_seconds DOUBLE;
ALTER TABLE events ADD COLUMN critical BOOLEAN;
UPDATE events SET artifact = json_extract_string(data, '$.artifact'),
                  sla_seconds = TRY_CAST(json_extract_string(data, '$.sla_seconds') AS DOUBLE),
                  critical = TRY_CAST(json_extract_string(data, '$.critical') AS BOOLEAN)
WHERE json_extract_string(data, '$.artifact') IS NOT NULL OR json_extract_string(data, '$.sla_seconds') IS NOT NULL
      OR json_extract_string(data, '$.critical') IS NOT NULL;
