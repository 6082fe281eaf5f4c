-- The verdict fields the SLIs count, stored as typed columns beside `data` (the writer fills them from the
-- validator's typed fields, storage.schema.STORED_FIELDS): a full SLI computation spent most of its time reading
-- them back out of the JSON. Existing rows get them from their data; a stored value of the wrong shape becomes NULL
-- (TRY_CAST), as the validator would never have typed it.
ALTER TABLE events ADD COLUMN ok BOOLEAN;
ALTER TABLE events ADD COLUMN result VARCHAR;
ALTER TABLE events ADD COLUMN reason VARCHAR;
UPDATE events SET ok = TRY_CAST(json_extract_string(data, '$.ok') AS BOOLEAN),
                  result = json_extract_string(data, '$.result'),
                  reason = json_extract_string(data, '$.reason')
WHERE json_extract_string(data, '$.ok') IS NOT NULL OR json_extract_string(data, '$.result') IS NOT NULL
      OR json_extract_string(data, '$.reason') IS NOT NULL;
