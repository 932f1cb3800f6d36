//! The `Store` methods whose SQL is the same on SQLite and PostgreSQL.

/// Implements [`crate::Store`] for a backend whose pool is `self.pool`, with the SQL text
/// from [`crate::rows`] that both dialects accept. Only the migrator and the purge statement
/// differ, and they are passed in; a backend that needs different SQL for one method stops
/// using this macro for that backend rather than branching inside it.
macro_rules! impl_store_with_shared_sql {
    ($store:ty, $migrator:expr, $purge:expr) => {
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
                let done = sqlx::query($crate::rows::DELETE_CLIENT)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_tokens(
                &self,
                tokens: &[tessera_core::token::TokenRecord],
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
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
                        .bind(&t.family_id)
                        .execute(&mut *tx)
                        .await?;
                }
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

            async fn purge_tokens(
                &self,
                now: tessera_core::clock::UnixTime,
                batch: u32,
            ) -> Result<u64, $crate::StoreError> {
                let done = sqlx::query($purge)
                    .bind(now)
                    .bind(i64::from(batch))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}
