-- Run by conductor's kind = "postgres" (init = ["db/init.sql"]) as user "app" on
-- database "app", after the cluster is up and before db counts as ready: the part
-- of the template's docker-entrypoint-initdb.d. The migration puts every table in
-- this schema and does not create it, so without this file prestart fails.
CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION CURRENT_USER;
COMMENT ON SCHEMA app IS 'created by db/init.sql';
