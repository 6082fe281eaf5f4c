-- Migration 0214's columns for the rows stored before it, from their data; a stored value of the wrong shape becomes
-- NULL (TRY_CAST), as the validator would never have typed it. Run over rowid ranges, each committed (storage/db.py).
UPDATE events SET artifact = json_extract_string(data, '$.artifact'),
                  sla_seconds = TRY_CAST(json_extract_string(data, '$.sla_seconds') AS DOUBLE),
                  critical = TRY_CAST(json_extract_string(data, '$.critical') AS BOOLEAN)
WHERE rowid BETWEEN $lo AND $hi
      AND (json_extract_string(data, '$.artifact') IS NOT NULL OR json_extract_string(data, '$.sla_seconds') IS NOT NULL
           OR json_extract_string(data, '$.critical') IS NOT NULL);
