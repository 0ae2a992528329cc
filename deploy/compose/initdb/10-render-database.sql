-- The render service's own database beside the credit service's (POSTGRES_DB): the two
-- services share nothing, not even a database.
CREATE DATABASE carpet_render OWNER carpet;
