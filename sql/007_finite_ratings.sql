-- Device ratings are finite numbers. PostgreSQL sorts 'NaN' above every number,
-- so the "> 0" checks of 001_core.sql accept 'NaN' and 'Infinity'; a NaN rated
-- power would switch off the schedule's power check for the whole site.
-- A rating that is not a number means nothing: it becomes "not given" (NULL),
-- for which the model's nominal rating is used.
UPDATE devices SET rated_power_kw = NULL WHERE rated_power_kw >= 'Infinity';
UPDATE devices SET capacity_kwh = NULL WHERE capacity_kwh >= 'Infinity';

ALTER TABLE devices
    ADD CONSTRAINT devices_rated_power_kw_finite
        CHECK (rated_power_kw > 0 AND rated_power_kw < 'Infinity'),
    ADD CONSTRAINT devices_capacity_kwh_finite
        CHECK (capacity_kwh > 0 AND capacity_kwh < 'Infinity');
