-- A site's on-site contact (name, e-mail, phone), edited on the Administration -> Sites page.
-- The lengths match the checks of kilowatch/fleet.py, which also checks their shape.
ALTER TABLE sites
    ADD COLUMN contact_name  text CHECK (length(contact_name) <= 120),
    ADD COLUMN contact_email text CHECK (length(contact_email) <= 254),
    ADD COLUMN contact_phone text CHECK (length(contact_phone) <= 30),
    ADD COLUMN updated_at    timestamptz;
