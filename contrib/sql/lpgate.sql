-- lpgate.sql: publish to lpgate from SQL, exactly as Odoo's bus does.
--
-- Load it into each database lpgate serves (psql -d mydb -f lpgate.sql).
-- It creates Odoo's bus_bus table when it is missing and a function
--     SELECT lpgate_send('my-channel', '{"text": "hello"}');
-- that inserts one row (channel and message in Odoo's json_dump text form)
-- and NOTIFYs imbus with the channel list.  lpgate LISTENs on imbus in the
-- database postgres (where Odoo notifies) and in every database it serves,
-- so the notification reaches it from here.  Polls see the message after
-- the calling transaction commits; call it from triggers freely.

CREATE TABLE IF NOT EXISTS bus_bus (
    id serial PRIMARY KEY,
    create_uid integer,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid integer,
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    channel varchar,
    message varchar
);

-- json.dumps(text) as Python writes it: to_json's escapes, plus every code
-- point above 0x7e as \uXXXX (lowercase, surrogate pairs above U+FFFF).
CREATE OR REPLACE FUNCTION lpgate_json_text(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    raw text := to_json(value)::text;
    out text := '';
    ch text;
    cp integer;
BEGIN
    FOR i IN 1 .. length(raw) LOOP
        ch := substr(raw, i, 1);
        cp := ascii(ch);
        IF cp < 127 THEN
            out := out || ch;
        ELSIF cp < 65536 THEN
            out := out || '\u' || lpad(to_hex(cp), 4, '0');
        ELSE
            cp := cp - 65536;
            out := out || '\u' || to_hex(55296 + (cp >> 10))
                       || '\u' || to_hex(56320 + (cp & 1023));
        END IF;
    END LOOP;
    RETURN out;
END
$$;

CREATE OR REPLACE FUNCTION lpgate_send(channel text, message json)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    new_id integer;
    chan text := lpgate_json_text(channel);
BEGIN
    INSERT INTO bus_bus (channel, message, create_date, write_date)
    VALUES (chan, message::text, now() AT TIME ZONE 'UTC',
            now() AT TIME ZONE 'UTC')
    RETURNING id INTO new_id;
    -- delivered at commit, like Odoo's postcommit NOTIFY
    PERFORM pg_notify('imbus', '[' || chan || ']');
    RETURN new_id;
END
$$;
