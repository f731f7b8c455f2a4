-- Destination contacts of this batch's merges: empty fields filled from the source's before-image, custom
-- attributes merged with the destination winning (jsonb ||: the right side wins). Email and identifier are
-- only taken when no other contact of the account holds them (they are unique per account).
UPDATE contacts SET
    name = COALESCE(NULLIF(contacts.name, ''), src.name),
    phone_number = COALESCE(NULLIF(contacts.phone_number, ''), src.phone_number),
    email = COALESCE(contacts.email, CASE WHEN NOT EXISTS (
        SELECT 1 FROM contacts o WHERE o.account_id = contacts.account_id AND o.email = src.email) THEN src.email END),
    identifier = COALESCE(contacts.identifier, CASE WHEN NOT EXISTS (
        SELECT 1 FROM contacts o WHERE o.account_id = contacts.account_id AND o.identifier = src.identifier) THEN src.identifier END),
    custom_attributes = src.custom_attributes || contacts.custom_attributes
FROM (
    SELECT DISTINCT ON (p.destination_contact_id) p.destination_contact_id, s.name, s.phone_number, s.email,
           s.identifier, s.custom_attributes
    FROM inbox_migration_contact_inboxes p
    JOIN inbox_migration_contacts s ON s.migration_id = p.migration_id AND s.contact_id = p.contact_id AND s.role = 'source'
    WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND p.contact_id <> p.destination_contact_id
    ORDER BY p.destination_contact_id, p.contact_inbox_id
) src
WHERE contacts.id = src.destination_contact_id
