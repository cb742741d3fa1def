-- The named inputs each stage key was hashed from (`keys::Inputs` as JSON), recorded
-- after a run for the stages whose key they reproduce: `factory why` compares them with
-- today's to say which input of a key changed.
ALTER TABLE stages ADD COLUMN inputs TEXT;
