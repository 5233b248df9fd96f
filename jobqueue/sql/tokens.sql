-- tokens.sql: API tokens and browser sessions, and checking them.
--
-- Owns:      the credentials a caller presents over HTTP: API tokens (stored as SHA-256
--            hashes, optionally expiring) and browser sessions (a token of its own, issued at
--            sign-in for the token that signed in, ended at sign-out).
-- Public:    create_token(user_id, name, expires_in, actor)  -- returns the secret once
--            revoke_token(token_id, actor)                    -- its sessions end with it
--            list_tokens(user_id, actor)                      -- ids, names, use and expiry; never
--                                                                a secret or a hash
--            authenticate(token)                  -- the token's user, or JQA01
--            create_session(token, lifetime)      -- sign-in: a session secret for a valid token
--            end_session(secret)                  -- sign-out; ending an unknown one is no error
--            check_credentials(tokens)            -- for open event feeds: which of these
--                                                    secrets still authenticate, as whom, seeing
--                                                    which organizations (one call for all)
-- Rule:      a credential authenticates while it is not revoked, not expired and, for a
--            session, while the token it was issued for does too (_credential).
-- Locks:     none beyond the rows written.
-- Raises:    JQA01 bad, revoked or expired credential, JQA02 forbidden, JQN03 user,
--            JQN04 token not found, JQV03 bad argument.
-- Events:    none. NOTIFY jobqueue_access (empty payload) when a credential is revoked or a
--            session ends, so open event feeds re-check their caller at once (event_hub.py).

-- The credential a secret stands for, if it authenticates now; NULL otherwise. Its
-- expires_at is the earlier of its own and, for a session, its token's.
CREATE OR REPLACE FUNCTION jobqueue._credential(p_secret text)
RETURNS TABLE (id bigint, user_id bigint, is_session boolean, expires_at timestamptz)
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT t.id, t.user_id, t.session_of IS NOT NULL,
           CASE WHEN p.expires_at IS NULL THEN t.expires_at
                ELSE least(t.expires_at, p.expires_at) END
    FROM jobqueue.api_token AS t
    LEFT JOIN jobqueue.api_token AS p ON p.id = t.session_of
    WHERE t.token_hash = sha256(convert_to(coalesce(p_secret, ''), 'UTF8'))
      AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
      AND (t.session_of IS NULL
           OR (p.revoked_at IS NULL AND (p.expires_at IS NULL OR p.expires_at > now())))
$$;

-- A new random secret: two v4 UUIDs give 244 random bits from the server's strong source.
CREATE OR REPLACE FUNCTION jobqueue._new_secret(p_prefix text) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_prefix || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
$$;

-- The signature before tokens could expire.
DROP FUNCTION IF EXISTS jobqueue.create_token(text, text, text);

CREATE OR REPLACE FUNCTION jobqueue.create_token(
    user_id text, name text DEFAULT 'default', expires_in interval DEFAULT NULL,
    actor text DEFAULT NULL
) RETURNS TABLE (token_id bigint, user_name text, token_name text, secret text,
                 expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_user_id bigint := jobqueue._user_id(create_token.user_id);
    v_secret text := jobqueue._new_secret('jq_');
    v_expires timestamptz := now() + create_token.expires_in;
    v_id bigint;
BEGIN
    IF actor IS DISTINCT FROM create_token.user_id THEN
        PERFORM jobqueue._require_admin(actor, 'create a token for another user');
    END IF;
    IF v_user_id IS NULL THEN
        RAISE EXCEPTION 'user "%" not found', create_token.user_id USING ERRCODE = 'JQN03';
    END IF;
    IF create_token.name IS NULL OR length(create_token.name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'token name must be 1-200 characters' USING ERRCODE = 'JQV03';
    END IF;
    IF create_token.expires_in IS NOT NULL
       AND create_token.expires_in NOT BETWEEN interval '1 minute' AND interval '10 years' THEN
        RAISE EXCEPTION 'a token expires in 1 minute to 10 years, got %', create_token.expires_in
            USING ERRCODE = 'JQV03';
    END IF;
    INSERT INTO jobqueue.api_token (user_id, name, token_hash, expires_at)
    VALUES (v_user_id, create_token.name, sha256(convert_to(v_secret, 'UTF8')), v_expires)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, create_token.user_id, create_token.name, v_secret, v_expires;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.revoke_token(token_id bigint, actor text DEFAULT NULL)
RETURNS TABLE (id bigint, revoked_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_owner text;
BEGIN
    SELECT u.name INTO v_owner FROM jobqueue.api_token AS t
    JOIN jobqueue.app_user AS u ON u.id = t.user_id WHERE t.id = revoke_token.token_id;
    IF NOT FOUND OR (actor IS DISTINCT FROM v_owner AND NOT jobqueue._is_admin(actor)) THEN
        RAISE EXCEPTION 'token % not found', revoke_token.token_id USING ERRCODE = 'JQN04';
    END IF;
    -- Its sessions stop authenticating with it (_credential); open feeds learn it now.
    PERFORM pg_notify('jobqueue_access', '');
    RETURN QUERY
        UPDATE jobqueue.api_token AS t SET revoked_at = coalesce(t.revoked_at, now())
        WHERE t.id = revoke_token.token_id
        RETURNING t.id, t.revoked_at;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_tokens(user_id text DEFAULT NULL, actor text DEFAULT NULL)
RETURNS TABLE (token_id bigint, user_name text, token_name text, kind text,
               created_at timestamptz, last_used_at timestamptz, expires_at timestamptz,
               revoked_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    -- A user lists their own tokens unless they name another; a service lists everyone's.
    v_user text := coalesce(list_tokens.user_id, actor);
BEGIN
    IF actor IS NOT NULL AND v_user IS DISTINCT FROM actor THEN
        PERFORM jobqueue._require_admin(actor, 'list another user''s tokens');
    END IF;
    IF v_user IS NOT NULL AND jobqueue._user_id(v_user) IS NULL THEN
        RAISE EXCEPTION 'user "%" not found', left(v_user, 200) USING ERRCODE = 'JQN03';
    END IF;
    RETURN QUERY
        SELECT t.id, u.name, t.name,
               CASE WHEN t.session_of IS NULL THEN 'token' ELSE 'session' END,
               t.created_at, t.last_used_at, t.expires_at, t.revoked_at
        FROM jobqueue.api_token AS t
        JOIN jobqueue.app_user AS u ON u.id = t.user_id
        WHERE v_user IS NULL OR u.name = v_user
        ORDER BY u.name, t.id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.authenticate(token text)
RETURNS TABLE (user_name text, is_admin boolean, token_id bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_credential record;
    v_last_used timestamptz;
BEGIN
    SELECT * INTO v_credential FROM jobqueue._credential(authenticate.token);
    IF v_credential.id IS NULL THEN
        RAISE EXCEPTION 'invalid, revoked or expired token' USING ERRCODE = 'JQA01';
    END IF;
    -- At most one write a minute per token, so authenticating every request stays read-only.
    SELECT t.last_used_at INTO v_last_used FROM jobqueue.api_token AS t
    WHERE t.id = v_credential.id;
    IF v_last_used IS NULL OR v_last_used < now() - interval '1 minute' THEN
        UPDATE jobqueue.api_token SET last_used_at = now() WHERE id = v_credential.id;
    END IF;
    RETURN QUERY SELECT u.name, u.is_admin, v_credential.id
                 FROM jobqueue.app_user AS u WHERE u.id = v_credential.user_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.create_session(
    token text, lifetime interval DEFAULT '12 hours'
) RETURNS TABLE (user_name text, is_admin boolean, token_id bigint, secret text,
                 expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_credential record;
    v_secret text := jobqueue._new_secret('jqs_');
    v_expires timestamptz;
    v_id bigint;
BEGIN
    IF lifetime IS NULL OR lifetime NOT BETWEEN interval '1 minute' AND interval '30 days' THEN
        RAISE EXCEPTION 'a session lasts 1 minute to 30 days' USING ERRCODE = 'JQV03';
    END IF;
    SELECT * INTO v_credential FROM jobqueue._credential(create_session.token);
    -- A session signs in with an API token, never with another session.
    IF v_credential.id IS NULL OR v_credential.is_session THEN
        RAISE EXCEPTION 'invalid, revoked or expired token' USING ERRCODE = 'JQA01';
    END IF;
    v_expires := least(now() + lifetime, v_credential.expires_at);
    INSERT INTO jobqueue.api_token (user_id, name, token_hash, expires_at, session_of,
                                    last_used_at)
    VALUES (v_credential.user_id, 'session', sha256(convert_to(v_secret, 'UTF8')), v_expires,
            v_credential.id, now())
    RETURNING id INTO v_id;
    UPDATE jobqueue.api_token SET last_used_at = now() WHERE id = v_credential.id;
    RETURN QUERY SELECT u.name, u.is_admin, v_id, v_secret, v_expires
                 FROM jobqueue.app_user AS u WHERE u.id = v_credential.user_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.end_session(secret text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    UPDATE jobqueue.api_token AS t SET revoked_at = now()
    WHERE t.token_hash = sha256(convert_to(coalesce(end_session.secret, ''), 'UTF8'))
      AND t.session_of IS NOT NULL AND t.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('jobqueue_access', '');
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.check_credentials(tokens text[])
RETURNS TABLE (ord integer, user_name text, is_admin boolean, organizations bigint[],
               expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    -- organizations NULL: every organization (an admin).
    SELECT s.ord::integer, u.name, u.is_admin,
           CASE WHEN u.is_admin THEN NULL
                ELSE coalesce((SELECT array_agg(m.organization_id ORDER BY m.organization_id)
                               FROM jobqueue.member AS m
                               WHERE m.user_id = u.id AND m.active), '{}') END,
           c.expires_at
    FROM unnest(check_credentials.tokens) WITH ORDINALITY AS s (secret, ord)
    CROSS JOIN LATERAL jobqueue._credential(s.secret) AS c
    JOIN jobqueue.app_user AS u ON u.id = c.user_id
    ORDER BY s.ord
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.create_token(text, text, interval, text) IS
    'create_token(user_id, name, expires_in, actor): returns the secret once; only its SHA-256 is stored; expires_in NULL never expires.';
COMMENT ON FUNCTION jobqueue.revoke_token(bigint, text) IS
    'revoke_token(token_id, actor): the token and its sessions stop authenticating; its owner or an admin may revoke it.';
COMMENT ON FUNCTION jobqueue.list_tokens(text, text) IS
    'list_tokens(user_id, actor): a user''s tokens and sessions (id, name, kind, use, expiry, revocation), never a secret.';
COMMENT ON FUNCTION jobqueue.authenticate(text) IS
    'authenticate(token): the token''s (or session''s) user, or JQA01 for a missing, unknown, revoked or expired one.';
COMMENT ON FUNCTION jobqueue.create_session(text, interval) IS
    'create_session(token, lifetime): sign-in; a new session secret for a valid API token, ending with it at the latest.';
COMMENT ON FUNCTION jobqueue.end_session(text) IS
    'end_session(secret): sign-out; true when a session ended.';
COMMENT ON FUNCTION jobqueue.check_credentials(text[]) IS
    'check_credentials(tokens): which of these secrets still authenticate, as whom, seeing which organizations (NULL: all).';
