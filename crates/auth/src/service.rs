//! The account service behind the routes, and the [`Authenticator`] every route's
//! [`AuthUser`](synctalk_kernel::AuthUser) goes through.

use std::sync::Arc;

use chrono::Utc;
use synctalk_db::{AsyncConnection, AsyncPgConnection, DbError, Pool};
use synctalk_gateway::{Domain, Outgoing, Topic};
use synctalk_kernel::auth::BoxFuture;
use synctalk_kernel::error::FieldErrors;
use synctalk_kernel::{AppError, AppResult, AuthUser, Authenticator, ErrorCode, SessionId, UserId};
use synctalk_users::domain::{Email, Username};
use synctalk_users::dto::CurrentUser;
use synctalk_users::model::{NewUser, UserRow};
use synctalk_users::repo::{self as users_repo, CreateUserError};

use crate::config::AuthConfig;
use crate::domain::{Password, parse_device_id};
use crate::dto::{LoginRequest, RefreshRequest, RegisterRequest, Session, TokenResponse};
use crate::model::{NewSession, RevokeReason};
use crate::password::Hasher;
use crate::repo;
use crate::session_cache::SessionCache;
use crate::tokens::{self, AccessTokens, hash_refresh_token, new_refresh_token};

/// Where a request comes from, recorded on its session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// `User-Agent`, cut to 512 characters.
    pub user_agent: Option<String>,
    /// The client address.
    pub ip: Option<String>,
}

/// Accounts, sessions and tokens.
#[derive(Clone)]
pub struct AuthService {
    pool: Pool,
    tokens: AccessTokens,
    hasher: Hasher,
    refresh_ttl: chrono::Duration,
    refresh_grace: chrono::Duration,
    login_free_failures: i32,
    login_max_delay: chrono::Duration,
    sessions: Arc<SessionCache>,
}

impl AuthService {
    /// Builds the service (computes the dummy hash used for unknown users).
    pub fn new(pool: Pool, config: &AuthConfig) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            tokens: AccessTokens::new(config.jwt_secret.expose(), config.access_token_ttl)?,
            hasher: Hasher::new(config.argon2)?,
            refresh_ttl: chrono::Duration::from_std(config.refresh_token_ttl)?,
            refresh_grace: chrono::Duration::from_std(config.refresh_reuse_grace)?,
            login_free_failures: i32::try_from(config.login_free_failures).unwrap_or(i32::MAX),
            login_max_delay: chrono::Duration::from_std(config.login_max_delay)?,
            sessions: SessionCache::new(config.session_cache_ttl),
        })
    }

    async fn conn(&self) -> Result<synctalk_db::PooledConn, DbError> {
        synctalk_db::conn(&self.pool).await
    }

    /// Creates an account and signs it in.
    pub async fn register(
        &self,
        body: RegisterRequest,
        client: ClientInfo,
    ) -> AppResult<TokenResponse> {
        let mut fields = FieldErrors::new();
        let mut problem =
            |field: &str, p: String| fields.entry(field.to_owned()).or_default().push(p);
        let username = Username::parse(&body.username)
            .map_err(|p| problem("username", p))
            .ok();
        let email = Email::parse(&body.email)
            .map_err(|p| problem("email", p))
            .ok();
        let password = Password::parse(&body.password)
            .map_err(|p| problem("password", p))
            .ok();
        let device_id = parse_device_opt(body.device_id.as_deref(), &mut problem);
        let (Some(username), Some(email), Some(password)) = (username, email, password) else {
            return Err(AppError::validation(fields));
        };
        if !fields.is_empty() {
            return Err(AppError::validation(fields));
        }

        let hash = self
            .hasher
            .hash(password.expose().to_owned())
            .await
            .map_err(hashing_failed)?;
        let (refresh_token, refresh_hash) = new_refresh_token().map_err(AppError::internal)?;
        let expires_at = Utc::now() + self.refresh_ttl;
        let mut conn = self.conn().await?;
        let (user, session) = conn
            .transaction::<_, AppError, _>(async |conn| {
                let user = users_repo::create(
                    conn,
                    NewUser {
                        id: UserId::new(),
                        username: username.as_str(),
                        email: email.as_str(),
                        password_hash: &hash,
                    },
                )
                .await
                .map_err(|error| match error {
                    CreateUserError::UsernameTaken => {
                        AppError::new(ErrorCode::UsernameTaken, "this username is taken")
                    }
                    CreateUserError::EmailTaken => {
                        AppError::new(ErrorCode::EmailTaken, "this email is already registered")
                    }
                    CreateUserError::Db(e) => AppError::internal(e),
                })?;
                let session = new_session(
                    conn,
                    &user,
                    device_id.as_deref(),
                    &client,
                    expires_at,
                    &refresh_hash,
                )
                .await?;
                Ok((user, session))
            })
            .await?;
        self.token_response(user, session, refresh_token)
    }

    /// Signs in with a username or email and a password.
    pub async fn login(&self, body: LoginRequest, client: ClientInfo) -> AppResult<TokenResponse> {
        let mut fields = FieldErrors::new();
        let mut problem =
            |field: &str, p: String| fields.entry(field.to_owned()).or_default().push(p);
        let device_id = parse_device_opt(body.device_id.as_deref(), &mut problem);
        if !fields.is_empty() {
            return Err(AppError::validation(fields));
        }
        let login = body.login.trim();
        let login = if login.contains('@') {
            login.to_owned()
        } else {
            login.to_lowercase()
        };
        let invalid = || AppError::new(ErrorCode::InvalidCredentials, "wrong login or password");
        // Over-long input, or input no account can have (control characters such as
        // NUL, which PostgreSQL text cannot hold), is refused after the same work as a
        // wrong password.
        let plausible = !login.is_empty()
            && login.len() <= 254
            && !login.chars().any(char::is_control)
            && body.password.chars().count() <= 128;
        // Attempts on one login from one address are counted before the password is
        // checked, so parallel attempts cannot slip past the slowdown together.
        let throttle = plausible.then(|| {
            format!(
                "{}|{}",
                login.to_lowercase(),
                client.ip.as_deref().unwrap_or("-")
            )
        });
        let user = if let Some(subject) = &throttle {
            let mut conn = self.conn().await?;
            self.claim_login_attempt(&mut conn, subject).await?;
            users_repo::find_by_login(&mut conn, &login).await?
        } else {
            None
        };
        let password = if plausible {
            body.password
        } else {
            String::new()
        };
        let ok = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(hashing_failed)?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(invalid());
        };
        if let Some(subject) = &throttle {
            let mut conn = self.conn().await?;
            repo::clear_login_failures(&mut conn, subject).await?;
        }

        let (refresh_token, refresh_hash) = new_refresh_token().map_err(AppError::internal)?;
        let expires_at = Utc::now() + self.refresh_ttl;
        let mut conn = self.conn().await?;
        let session = conn
            .transaction::<_, AppError, _>(async |conn| {
                new_session(
                    conn,
                    &user,
                    device_id.as_deref(),
                    &client,
                    expires_at,
                    &refresh_hash,
                )
                .await
            })
            .await?;
        self.token_response(user, session, refresh_token)
    }

    /// Counts a sign-in attempt of `subject` (a login text and a client address), or
    /// answers 429 while that subject must wait. The login text, not the account, so
    /// that a login naming nobody answers exactly like one naming someone, and one
    /// account's username and email are not linked by the answers; with the address,
    /// so that someone guessing elsewhere cannot lock you out.
    async fn claim_login_attempt(
        &self,
        conn: &mut AsyncPgConnection,
        subject: &str,
    ) -> AppResult<()> {
        let max = i32::try_from(self.login_max_delay.num_seconds()).unwrap_or(i32::MAX);
        if let Some(retry_at) =
            repo::claim_login_attempt(conn, subject, self.login_free_failures, max).await?
        {
            let wait = retry_at - Utc::now();
            let ms = u64::try_from(wait.num_milliseconds()).unwrap_or(0).max(1);
            return Err(AppError::rate_limited(ms)
                .with_message("too many failed sign-ins for this login; retry later"));
        }
        Ok(())
    }

    /// Rotates a refresh token. A spent token revokes its whole session.
    pub async fn refresh(
        &self,
        body: RefreshRequest,
        client: ClientInfo,
    ) -> AppResult<TokenResponse> {
        let presented_token = body.refresh_token.trim();
        let presented = hash_refresh_token(presented_token);
        let (refresh_token, refresh_hash) = new_refresh_token().map_err(AppError::internal)?;
        let sealed = tokens::seal(presented_token, &refresh_token).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("a new refresh token did not seal"))
        })?;
        let expires_at = Utc::now() + self.refresh_ttl;
        let grace = self.refresh_grace;
        let mut conn = self.conn().await?;
        // `None`: refused (the reuse revocation above still commits).
        let mut reused_session = None;
        let reused = &mut reused_session;
        let outcome = conn
            .transaction::<_, AppError, _>(async |conn| {
                let Some((token, session)) = repo::lock_refresh_token(conn, &presented).await? else {
                    return Ok(None);
                };
                if session.revoked_at.is_some() || session.expires_at <= Utc::now() {
                    return Ok(None);
                }
                if let Some(used_at) = token.used_at {
                    // A retry of a refresh whose answer the client never saw (a flaky
                    // network, two requests racing): within the grace window, and while
                    // the successor is unspent, the same successor again.
                    if let (Some(hash), Some(sealed)) = (&token.successor_hash, &token.successor_sealed)
                        && Utc::now() - used_at <= grace
                        && repo::is_unspent(conn, hash).await?
                        && let Some(successor) = tokens::unseal(presented_token, sealed)
                        && let Some(user) = users_repo::find(conn, session.user_id).await?
                    {
                        return Ok(Some((user, session.id, successor)));
                    }
                    // Someone holds a copy of a token that was already rotated: end the
                    // session for both of them.
                    tracing::warn!(session_id = %session.id, "refresh token reused; session revoked");
                    repo::revoke(conn, session.user_id, session.id, RevokeReason::RefreshTokenReused).await?;
                    ended(conn, &[session.id]).await?;
                    *reused = Some(session.id);
                    return Ok(None);
                }
                let Some(user) = users_repo::find(conn, session.user_id).await? else {
                    return Ok(None);
                };
                repo::spend_refresh_token(conn, &presented, &refresh_hash, &sealed).await?;
                repo::insert_refresh_token(conn, session.id, &refresh_hash).await?;
                repo::touch_session(conn, session.id, expires_at, client.user_agent.as_deref(), client.ip.as_deref())
                    .await?;
                Ok(Some((user, session.id, refresh_token.clone())))
            })
            .await?;
        if let Some(session) = reused_session {
            // This node refuses it at once; the others when the NOTIFY reaches them.
            self.sessions.evict(session);
            tracing::info!(session_id = %session, "session revoked after refresh token reuse");
        }
        match outcome {
            Some((user, session, refresh_token)) => {
                self.token_response(user, session, refresh_token)
            }
            None => Err(AppError::new(
                ErrorCode::InvalidRefreshToken,
                "the refresh token is invalid, expired or already used",
            )),
        }
    }

    /// Ends the session making the request.
    pub async fn logout(&self, auth: AuthUser) -> AppResult<()> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if repo::revoke(conn, auth.user_id, auth.session_id, RevokeReason::Logout).await? {
                ended(conn, &[auth.session_id]).await?;
            }
            Ok(())
        })
        .await?;
        self.sessions.evict(auth.session_id);
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub async fn sessions(&self, auth: AuthUser) -> AppResult<Vec<Session>> {
        let mut conn = self.conn().await?;
        let rows = repo::list_live(&mut conn, auth.user_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| Session {
                current: row.id == auth.session_id,
                id: row.id,
                device_id: row.device_id,
                user_agent: row.user_agent,
                ip: row.ip,
                created_at: row.created_at,
                last_used_at: row.last_used_at,
                expires_at: row.expires_at,
            })
            .collect())
    }

    /// Ends one of the caller's sessions.
    pub async fn revoke_session(&self, auth: AuthUser, session: SessionId) -> AppResult<()> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if !repo::revoke(conn, auth.user_id, session, RevokeReason::Revoked).await? {
                return Err(AppError::not_found("session"));
            }
            ended(conn, &[session]).await
        })
        .await?;
        self.sessions.evict(session);
        Ok(())
    }

    fn token_response(
        &self,
        user: UserRow,
        session: SessionId,
        refresh_token: String,
    ) -> AppResult<TokenResponse> {
        let access_token = self
            .tokens
            .issue(user.id, session)
            .map_err(AppError::internal)?;
        Ok(TokenResponse {
            user: CurrentUser::from(user),
            access_token,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.tokens.ttl_secs(),
            session_id: session,
        })
    }

    /// The cache of live sessions; run its [`SessionCache::listen`] for it to be used.
    pub fn session_cache(&self) -> Arc<SessionCache> {
        self.sessions.clone()
    }

    /// Forgets sealed successors past the refresh grace window (every minute).
    pub async fn forget_successors(&self) -> AppResult<usize> {
        let mut conn = self.conn().await?;
        Ok(repo::forget_successors(&mut conn, self.refresh_grace).await?)
    }

    /// Deletes sessions that ended or expired more than a week ago.
    pub async fn prune(&self) -> AppResult<usize> {
        let mut conn = self.conn().await?;
        repo::prune_login_failures(&mut conn, chrono::Duration::days(1)).await?;
        Ok(repo::prune_sessions(&mut conn, chrono::Duration::days(7)).await?)
    }

    /// Whose token this is, by signature and expiry alone (no database): for rate
    /// limiting, never for authorisation.
    pub fn token_user(&self, token: &str) -> Option<UserId> {
        self.tokens.verify(token).map(|claims| UserId(claims.sub))
    }

    async fn check(&self, token: &str) -> AppResult<AuthUser> {
        let invalid = || {
            AppError::new(
                ErrorCode::InvalidToken,
                "the access token is invalid or expired",
            )
        };
        let claims = self.tokens.verify(token).ok_or_else(invalid)?;
        let auth = AuthUser {
            user_id: UserId(claims.sub),
            session_id: SessionId(claims.sid),
        };
        if self.sessions.is_live(auth.session_id, auth.user_id) {
            return Ok(auth);
        }
        let generation = self.sessions.generation();
        let mut conn = self.conn().await?;
        let last_used = repo::find_live(&mut conn, auth.session_id, auth.user_id)
            .await?
            .ok_or_else(invalid)?;
        if Utc::now() - last_used > chrono::Duration::minutes(1) {
            repo::mark_used(&mut conn, auth.session_id).await?;
        }
        self.sessions
            .remember(auth.session_id, auth.user_id, generation);
        Ok(auth)
    }
}

impl Authenticator for AuthService {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<AuthUser, AppError>> {
        Box::pin(self.check(token))
    }

    fn verify(&self, token: &str) -> Option<AuthUser> {
        self.tokens.verify(token).map(|claims| AuthUser {
            user_id: UserId(claims.sub),
            session_id: SessionId(claims.sid),
        })
    }
}

/// A saturated hasher is 503 with a time to retry; anything else is internal.
fn hashing_failed(error: anyhow::Error) -> AppError {
    if error.downcast_ref::<crate::password::Busy>().is_some() {
        AppError::unavailable("too many sign-ins at once; try again shortly", 1000)
    } else {
        AppError::internal(error)
    }
}

fn parse_device_opt(value: Option<&str>, problem: &mut impl FnMut(&str, String)) -> Option<String> {
    value.and_then(|v| parse_device_id(v).map_err(|p| problem("device_id", p)).ok())
}

/// Closes the gateway sockets of sessions that end in this transaction, on every node
/// (through the outbox: durable, and in order with everything else they receive).
async fn ended(conn: &mut AsyncPgConnection, sessions: &[SessionId]) -> AppResult<()> {
    let rows = sessions
        .iter()
        .map(|s| Outgoing::revoke(Domain::Users, Topic::Session(*s), "session ended"))
        .collect::<AppResult<Vec<_>>>()?;
    // Setting `revoked_at` also announces the end to every node's session cache (a
    // trigger, migration 000010).
    synctalk_gateway::event::append(conn, &rows).await?;
    Ok(())
}

/// Creates a session; call it inside a transaction (the device's lock is held until it
/// ends).
async fn new_session(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    device_id: Option<&str>,
    client: &ClientInfo,
    expires_at: chrono::DateTime<Utc>,
    refresh_hash: &[u8],
) -> AppResult<SessionId> {
    if let Some(device) = device_id {
        // Sign-ins on one device take turns (until their transactions end), so each
        // replaces the one before it and one session per device is left.
        repo::lock_device(conn, user.id, device).await?;
        let replaced = repo::revoke_device(conn, user.id, device).await?;
        ended(conn, &replaced).await?;
    }
    let known = repo::knows_user_agent(conn, user.id, client.user_agent.as_deref()).await?;
    let session = repo::create_session(
        conn,
        NewSession {
            id: SessionId::new(),
            user_id: user.id,
            device_id,
            user_agent: client.user_agent.as_deref(),
            ip: client.ip.as_deref(),
            expires_at,
        },
        refresh_hash,
    )
    .await?;
    // A sign-in from a client this account never used before (not the first one).
    if known == Some(false) {
        let agent = client.user_agent.as_deref().unwrap_or("an unknown client");
        let from = client
            .ip
            .as_deref()
            .map(|ip| format!(" at {ip}"))
            .unwrap_or_default();
        synctalk_notifications::service::create(
            conn,
            vec![synctalk_notifications::service::NewNotification {
                user: user.id,
                kind: synctalk_notifications::dto::NotificationKind::System,
                title: "New sign-in".into(),
                body: format!("Signed in from {agent}{from}. Not you? End that session and change your password."),
                data: serde_json::json!({
                    "session_id": session.id,
                    "user_agent": client.user_agent,
                    "ip": client.ip,
                }),
            }],
        )
        .await?;
    }
    Ok(session.id)
}
