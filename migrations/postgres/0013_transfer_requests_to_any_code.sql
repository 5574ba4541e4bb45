-- A transfer request to another PIN may name any well-formed location code: it is recorded
-- whether or not that location exists (the sender learns nothing of another PIN), and the state
-- approves or rejects it. So `to_location` no longer references `locations`.
ALTER TABLE transfers DROP CONSTRAINT transfers_to_location_fkey;
