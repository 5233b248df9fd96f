-- access.sql: organizations, users, memberships, and the one access rule.
--
-- Owns:      who may see and act on which organization.
-- Public:    can_access(user_id, organization)          -- the rule every read and action uses
--            create_organization(name, actor)            -- a new organization (services, admins)
--            create_user(user_id, admin, actor)          -- a user, optionally a global admin
--            add_member(user_id, organization, role, actor)    -- (re)activates a membership
--            remove_member(user_id, organization, actor)       -- the membership stays, inactive
--            list_organizations(actor)
--            (API tokens and browser sessions: tokens.sql)
-- Rule:      actor NULL is a trusted service (a role granted EXECUTE) and may do anything; a
--            global admin may do anything; otherwise an ACTIVE membership grants access to that
--            organization's jobs, and role 'admin' also manages its members. The actor is
--            asserted by the caller: the database role decides what a caller may run
--            (grants.sql), the actor only narrows what it sees.
-- Locks:     none beyond the rows written.
-- Raises:    JQA02 forbidden, JQN02 organization, JQN03 user not found, JQC01 name taken,
--            JQV03 bad argument.
-- Events:    none. NOTIFY jobqueue_access (empty payload) when access shrinks (a membership
--            removed, an admin demoted), so open event feeds re-check their caller at once.

CREATE OR REPLACE FUNCTION jobqueue._user_id(p_name text) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT id FROM jobqueue.app_user WHERE name = p_name
$$;

CREATE OR REPLACE FUNCTION jobqueue._is_admin(p_actor text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT p_actor IS NULL
        OR coalesce((SELECT is_admin FROM jobqueue.app_user WHERE name = p_actor), false)
$$;

CREATE OR REPLACE FUNCTION jobqueue._can_access_id(p_actor text, p_organization_id bigint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT p_actor IS NULL OR EXISTS (
        SELECT FROM jobqueue.app_user AS u
        WHERE u.name = p_actor
          AND (u.is_admin OR EXISTS (
              SELECT FROM jobqueue.member AS m
              WHERE m.user_id = u.id AND m.organization_id = p_organization_id AND m.active))
    )
$$;

-- The organizations an actor may see; NULL means every one (a service or an admin).
CREATE OR REPLACE FUNCTION jobqueue._visible_organizations(p_actor text) RETURNS bigint[]
LANGUAGE sql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN jobqueue._is_admin(p_actor) THEN NULL
        ELSE coalesce((SELECT array_agg(m.organization_id ORDER BY m.organization_id)
                       FROM jobqueue.member AS m
                       JOIN jobqueue.app_user AS u ON u.id = m.user_id
                       WHERE u.name = p_actor AND m.active), '{}')
    END
$$;

-- The organization's id when the actor may use it; JQN02 for a service naming an unknown
-- one, JQA02 for a user (who learns nothing about organizations that are not theirs).
CREATE OR REPLACE FUNCTION jobqueue._require_organization(p_actor text, p_organization text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    IF p_organization IS NULL THEN
        RAISE EXCEPTION 'organization is required' USING ERRCODE = 'JQV03';
    END IF;
    SELECT id INTO v_id FROM jobqueue.organization WHERE name = p_organization;
    IF v_id IS NOT NULL AND jobqueue._can_access_id(p_actor, v_id) THEN
        RETURN v_id;
    END IF;
    IF p_actor IS NULL THEN
        RAISE EXCEPTION 'organization "%" not found', p_organization USING ERRCODE = 'JQN02';
    END IF;
    RAISE EXCEPTION 'organization "%" is not accessible to user "%"', p_organization, p_actor
        USING ERRCODE = 'JQA02';
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._require_admin(p_actor text, p_what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF NOT jobqueue._is_admin(p_actor) THEN
        RAISE EXCEPTION 'only an admin may %', p_what USING ERRCODE = 'JQA02';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.can_access(user_id text, organization text)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT coalesce(jobqueue._can_access_id(
        can_access.user_id,
        (SELECT o.id FROM jobqueue.organization AS o WHERE o.name = can_access.organization)
    ) AND EXISTS (SELECT FROM jobqueue.organization AS o WHERE o.name = can_access.organization),
    false)
$$;

CREATE OR REPLACE FUNCTION jobqueue.create_organization(name text, actor text DEFAULT NULL)
RETURNS TABLE (id bigint, organization text, created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM jobqueue._require_admin(actor, 'create an organization');
    IF create_organization.name IS NULL
       OR create_organization.name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'organization name must be 1-63 letters, digits, "_", "." or "-", got %',
            quote_nullable(left(create_organization.name, 80)) USING ERRCODE = 'JQV03';
    END IF;
    RETURN QUERY
        INSERT INTO jobqueue.organization AS o (name) VALUES (create_organization.name)
        ON CONFLICT ON CONSTRAINT organization_name_key DO NOTHING
        RETURNING o.id, o.name, o.created_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization "%" already exists', create_organization.name
            USING ERRCODE = 'JQC01';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._ensure_user(p_name text, p_admin boolean) RETURNS bigint
LANGUAGE plpgsql
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$' THEN
        RAISE EXCEPTION 'user name must be 1-128 letters, digits, "_", ".", "@", "+" or "-", got %',
            quote_nullable(left(p_name, 80)) USING ERRCODE = 'JQV03';
    END IF;
    IF NOT coalesce(p_admin, true)
       AND EXISTS (SELECT FROM jobqueue.app_user WHERE name = p_name AND is_admin) THEN
        PERFORM pg_notify('jobqueue_access', '');
    END IF;
    INSERT INTO jobqueue.app_user (name, is_admin) VALUES (p_name, coalesce(p_admin, false))
    ON CONFLICT ON CONSTRAINT app_user_name_key
        DO UPDATE SET is_admin = coalesce(p_admin, jobqueue.app_user.is_admin)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.create_user(
    user_id text, admin boolean DEFAULT false, actor text DEFAULT NULL
) RETURNS TABLE (id bigint, user_name text, is_admin boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    PERFORM jobqueue._require_admin(actor, 'create a user');
    -- A separate statement: a query does not see rows its own function call inserts.
    v_id := jobqueue._ensure_user(create_user.user_id, create_user.admin);
    RETURN QUERY SELECT u.id, u.name, u.is_admin FROM jobqueue.app_user AS u WHERE u.id = v_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue._require_org_admin(p_actor text, p_organization text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_org_id bigint := jobqueue._require_organization(p_actor, p_organization);
BEGIN
    IF NOT jobqueue._is_admin(p_actor) AND NOT EXISTS (
        SELECT FROM jobqueue.member AS m JOIN jobqueue.app_user AS u ON u.id = m.user_id
        WHERE u.name = p_actor AND m.organization_id = v_org_id AND m.active AND m.role = 'admin'
    ) THEN
        RAISE EXCEPTION 'only an admin of "%" may manage its members', p_organization
            USING ERRCODE = 'JQA02';
    END IF;
    RETURN v_org_id;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.add_member(
    user_id text, organization text, role text DEFAULT 'member', actor text DEFAULT NULL
) RETURNS TABLE (user_name text, organization_name text, member_role text, active boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_org_id bigint := jobqueue._require_org_admin(actor, add_member.organization);
    v_user_id bigint;
BEGIN
    IF add_member.role IS NULL OR add_member.role NOT IN ('member', 'admin') THEN
        RAISE EXCEPTION 'role must be "member" or "admin", got %', quote_nullable(add_member.role)
            USING ERRCODE = 'JQV03';
    END IF;
    v_user_id := jobqueue._ensure_user(add_member.user_id, NULL);
    INSERT INTO jobqueue.member AS m (user_id, organization_id, role, active)
    VALUES (v_user_id, v_org_id, add_member.role::jobqueue.member_role, true)
    ON CONFLICT ON CONSTRAINT member_pkey
        DO UPDATE SET role = excluded.role, active = true, updated_at = now();
    RETURN QUERY SELECT add_member.user_id, add_member.organization, add_member.role, true;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.remove_member(
    user_id text, organization text, actor text DEFAULT NULL
) RETURNS TABLE (user_name text, organization_name text, member_role text, active boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_org_id bigint := jobqueue._require_org_admin(actor, remove_member.organization);
    v_role jobqueue.member_role;
BEGIN
    UPDATE jobqueue.member AS m SET active = false, updated_at = now()
    WHERE m.user_id = jobqueue._user_id(remove_member.user_id) AND m.organization_id = v_org_id
    RETURNING m.role INTO v_role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" is not a member of "%"', remove_member.user_id,
            remove_member.organization USING ERRCODE = 'JQN03';
    END IF;
    -- Open event feeds of that user re-check what they may see (event_hub.py).
    PERFORM pg_notify('jobqueue_access', '');
    RETURN QUERY SELECT remove_member.user_id, remove_member.organization, v_role::text, false;
END
$$;

CREATE OR REPLACE FUNCTION jobqueue.list_organizations(actor text DEFAULT NULL)
RETURNS TABLE (id bigint, organization text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = jobqueue, pg_catalog, pg_temp
AS $$
    SELECT o.id, o.name, o.created_at
    FROM jobqueue.organization AS o
    WHERE jobqueue._visible_organizations(list_organizations.actor) IS NULL
       OR o.id = ANY (jobqueue._visible_organizations(list_organizations.actor))
    ORDER BY o.name
$$;

-- \df+ explains each public function with its header line.
COMMENT ON FUNCTION jobqueue.can_access(text, text) IS
    'can_access(user_id, organization): the rule every read and action uses; true when the user is an admin or an active member of the organization.';
COMMENT ON FUNCTION jobqueue.create_organization(text, text) IS
    'create_organization(name, actor): a new organization (services, admins); JQC01 when the name is taken.';
COMMENT ON FUNCTION jobqueue.create_user(text, boolean, text) IS
    'create_user(user_id, admin, actor): a user, optionally a global admin (services, admins).';
COMMENT ON FUNCTION jobqueue.add_member(text, text, text, text) IS
    'add_member(user_id, organization, role, actor): (re)activates a membership; role member or admin.';
COMMENT ON FUNCTION jobqueue.remove_member(text, text, text) IS
    'remove_member(user_id, organization, actor): the membership stays, inactive; the user then sees nothing of the organization.';
COMMENT ON FUNCTION jobqueue.list_organizations(text) IS
    'list_organizations(actor): the organizations the actor may see.';
