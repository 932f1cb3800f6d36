//! The `Store` methods whose SQL is the same on SQLite and PostgreSQL.

/// Implements [`crate::Store`] for a backend whose pool is `self.pool`, with the SQL text
/// from [`crate::rows`] that both dialects accept. What differs is passed in: the database
/// type, the migrator, and a `dialect` module with the purge statements. A backend that
/// needs different SQL for a method gets a new `dialect` constant, never a branch here.
macro_rules! impl_store_with_shared_sql {
    ($store:ty, $db:ty, $migrator:expr, $dialect:ident) => {
        impl $store {
            async fn insert_token_rows(
                tx: &mut sqlx::Transaction<'_, $db>,
                tokens: &[tessera_core::token::TokenRecord],
            ) -> Result<(), $crate::StoreError> {
                for t in tokens {
                    sqlx::query($crate::rows::INSERT_TOKEN)
                        .bind(t.hash.as_bytes().as_slice())
                        .bind($crate::rows::kind_code(t.kind))
                        .bind(&t.client_id)
                        .bind(&t.subject)
                        .bind(t.scope.to_string())
                        .bind(t.issued_at)
                        .bind(t.expires_at)
                        .bind(t.revoked_at)
                        .bind(t.rotated_at)
                        .bind(&t.family_id)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn execute_on_username(
                &self,
                statements: &[&'static str],
                username: &str,
            ) -> Result<u64, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut last = 0;
                for sql in statements {
                    last = sqlx::query(*sql)
                        .bind(username)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(last)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn migrate(&self) -> Result<(), $crate::StoreError> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_client(
                &self,
                client: &tessera_core::client::Client,
            ) -> Result<(), $crate::StoreError> {
                let cols = $crate::rows::ClientColumns::of(client);
                sqlx::query($crate::rows::INSERT_CLIENT)
                    .bind(&client.id)
                    .bind(&client.name)
                    .bind(&client.secret_hash)
                    .bind(client.auth_method.as_str())
                    .bind(&cols.grant_types)
                    .bind(&cols.scope)
                    .bind(&cols.redirect_uris)
                    .bind(client.skip_consent)
                    .bind(client.created_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_client(
                &self,
                client_id: &str,
            ) -> Result<Option<tessera_core::client::Client>, $crate::StoreError> {
                if !$crate::rows::storable(client_id) {
                    return Ok(None);
                }
                sqlx::query_as::<_, $crate::rows::ClientRow>($crate::rows::SELECT_CLIENT)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(tessera_core::client::Client::try_from)
                    .transpose()
            }

            async fn list_clients(
                &self,
            ) -> Result<Vec<tessera_core::client::Client>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::rows::ClientRow>($crate::rows::LIST_CLIENTS)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(tessera_core::client::Client::try_from)
                    .collect()
            }

            async fn delete_client(&self, client_id: &str) -> Result<bool, $crate::StoreError> {
                if !$crate::rows::storable(client_id) {
                    return Ok(false);
                }
                let done = sqlx::query($crate::rows::DELETE_CLIENT)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_user(
                &self,
                user: &tessera_core::user::User,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::rows::INSERT_USER)
                    .bind(&user.id)
                    .bind(user.username.as_str())
                    .bind(&user.password_hash)
                    .bind(user.created_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_user_by_username(
                &self,
                username: &str,
            ) -> Result<Option<tessera_core::user::User>, $crate::StoreError> {
                if !$crate::rows::storable(username) {
                    return Ok(None);
                }
                sqlx::query_as::<_, $crate::rows::UserRow>($crate::rows::SELECT_USER_BY_NAME)
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(tessera_core::user::User::try_from)
                    .transpose()
            }

            async fn delete_user(&self, username: &str) -> Result<bool, $crate::StoreError> {
                if !$crate::rows::storable(username) {
                    return Ok(false);
                }
                // Tokens name their user in `subject` without a foreign key (client tokens
                // have none), so they go explicitly; the rest cascades.
                let deleted = self
                    .execute_on_username(
                        &[$crate::rows::DELETE_USER_TOKENS, $crate::rows::DELETE_USER],
                        username,
                    )
                    .await?;
                Ok(deleted > 0)
            }

            async fn set_password(
                &self,
                username: &str,
                password_hash: &str,
            ) -> Result<bool, $crate::StoreError> {
                if !$crate::rows::storable(username) {
                    return Ok(false);
                }
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query($crate::rows::SET_PASSWORD)
                    .bind(username)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::rows::DELETE_USER_SESSIONS)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_tokens(
                &self,
                tokens: &[tessera_core::token::TokenRecord],
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                Self::insert_token_rows(&mut tx, tokens).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_token(
                &self,
                hash: &tessera_core::token::TokenHash,
            ) -> Result<Option<tessera_core::token::TokenRecord>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::rows::TokenRow>($crate::rows::SELECT_TOKEN)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(tessera_core::token::TokenRecord::try_from)
                    .transpose()
            }

            async fn revoke_token(
                &self,
                hash: &tessera_core::token::TokenHash,
                now: tessera_core::clock::UnixTime,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query($crate::rows::REVOKE_TOKEN)
                    .bind(hash.as_bytes().as_slice())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_family(
                &self,
                family_id: &str,
                now: tessera_core::clock::UnixTime,
            ) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query($crate::rows::REVOKE_FAMILY)
                    .bind(family_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn rotate_refresh_token(
                &self,
                hash: &tessera_core::token::TokenHash,
                now: tessera_core::clock::UnixTime,
                successors: &[tessera_core::token::TokenRecord],
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                let claimed = sqlx::query($crate::rows::ROTATE_REFRESH)
                    .bind(hash.as_bytes().as_slice())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if !claimed {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Self::insert_token_rows(&mut tx, successors).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_code(
                &self,
                code: &tessera_core::grant::AuthorizationCodeRecord,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::rows::INSERT_CODE)
                    .bind(code.hash.as_bytes().as_slice())
                    .bind(&code.client_id)
                    .bind(&code.user_id)
                    .bind(&code.redirect_uri)
                    .bind(code.redirect_uri_given)
                    .bind(code.scope.to_string())
                    .bind(&code.code_challenge)
                    .bind(code.issued_at)
                    .bind(code.expires_at)
                    .bind(code.redeemed_at)
                    .bind(&code.family_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn find_code(
                &self,
                hash: &tessera_core::token::TokenHash,
            ) -> Result<Option<tessera_core::grant::AuthorizationCodeRecord>, $crate::StoreError>
            {
                sqlx::query_as::<_, $crate::rows::CodeRow>($crate::rows::SELECT_CODE)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(tessera_core::grant::AuthorizationCodeRecord::try_from)
                    .transpose()
            }

            async fn redeem_code(
                &self,
                hash: &tessera_core::token::TokenHash,
                now: tessera_core::clock::UnixTime,
                tokens: &[tessera_core::token::TokenRecord],
            ) -> Result<$crate::Redemption, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                let claimed = sqlx::query($crate::rows::REDEEM_CODE)
                    .bind(hash.as_bytes().as_slice())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if claimed {
                    Self::insert_token_rows(&mut tx, tokens).await?;
                    tx.commit().await?;
                    return Ok($crate::Redemption::Redeemed);
                }
                let family: Option<String> = sqlx::query_scalar($crate::rows::CODE_FAMILY)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.rollback().await?;
                Ok(match family {
                    Some(family_id) => $crate::Redemption::AlreadyRedeemed { family_id },
                    None => $crate::Redemption::NotFound,
                })
            }

            async fn create_session(
                &self,
                session: &$crate::Session,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::rows::INSERT_SESSION)
                    .bind(session.hash.as_bytes().as_slice())
                    .bind(&session.user_id)
                    .bind(session.created_at)
                    .bind(session.expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn find_session_user(
                &self,
                hash: &tessera_core::token::TokenHash,
                now: tessera_core::clock::UnixTime,
            ) -> Result<Option<tessera_core::user::User>, $crate::StoreError> {
                sqlx::query_as::<_, $crate::rows::UserRow>($crate::rows::SELECT_SESSION_USER)
                    .bind(hash.as_bytes().as_slice())
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(tessera_core::user::User::try_from)
                    .transpose()
            }

            async fn delete_session(
                &self,
                hash: &tessera_core::token::TokenHash,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::rows::DELETE_SESSION)
                    .bind(hash.as_bytes().as_slice())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_consent(
                &self,
                user_id: &str,
                client_id: &str,
            ) -> Result<Option<tessera_core::scope::Scope>, $crate::StoreError> {
                let scope: Option<String> = sqlx::query_scalar($crate::rows::SELECT_CONSENT)
                    .bind(user_id)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                scope
                    .map(|s| {
                        tessera_core::scope::Scope::parse(&s)
                            .map_err(|_| $crate::StoreError::Corrupt("consent scope".into()))
                    })
                    .transpose()
            }

            async fn put_consent(
                &self,
                user_id: &str,
                client_id: &str,
                scope: &tessera_core::scope::Scope,
                now: tessera_core::clock::UnixTime,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::rows::UPSERT_CONSENT)
                    .bind(user_id)
                    .bind(client_id)
                    .bind(scope.to_string())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_expired(
                &self,
                now: tessera_core::clock::UnixTime,
                batch: u32,
            ) -> Result<u64, $crate::StoreError> {
                let mut most = 0;
                for sql in [
                    $dialect::PURGE_TOKENS,
                    $dialect::PURGE_CODES,
                    $dialect::PURGE_SESSIONS,
                ] {
                    let done = sqlx::query(sql)
                        .bind(now)
                        .bind(i64::from(batch))
                        .execute(&self.pool)
                        .await?;
                    most = most.max(done.rows_affected());
                }
                Ok(most)
            }
        }
    };
}
