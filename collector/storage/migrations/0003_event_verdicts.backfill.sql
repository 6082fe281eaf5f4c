-- Migration 0003's columns for the rows stored before it, from their data; a stored value of the wrong shape becomes
-- NULL (TRY_CAST), as the validator would never have typed it. Run over rowid ranges, each committed (storage/db.py).
UPDATE events SET ok = TRY_CAST(json_extract_string(data, '$.ok') AS BOOLEAN),
                  result = json_extract_string(data, '$.result'),
                  reason = json_extract_string(data, '$.reason')
WHERE rowid BETWEEN $lo AND $hi
      AND (json_extract_string(data, '$.ok') IS NOT NULL OR json_extract_string(data, '$.result') IS NOT NULL
           OR json_extract_string(data, '$.reason') IS NOT NULL);
