//! Resource servers (RFC 8707 audiences), as an operator registers, changes and removes them.

use tessera_core::audit::RevocationCause;
use tessera_core::resource::{Resource, ResourceError, ResourceUri, register_resource};
use tessera_core::scope::Scope;
use tessera_core::secret::Secret;
use tessera_store::StoreError;

use crate::admin::{Admin, AdminError, Page, PageRequest, check_length, not_found};
use crate::hashing;

/// What an operator changes of a resource server; what is `None` stays.
#[derive(Debug, Clone, Default)]
pub struct ResourceChange {
    pub name: Option<String>,
    pub scope: Option<String>,
}

impl Admin<'_> {
    pub async fn list_resources(&self, page: &PageRequest) -> Result<Page<Resource>, AdminError> {
        let (limit, after) = page.parse()?;
        let found = self.flows.store.resources_after(&after, limit + 1).await?;
        Ok(Page::of(found, limit, |r| r.uri.as_str()))
    }

    /// Registers a resource server with the client it introspects as; the client's secret
    /// in clear, once.
    pub async fn create_resource(
        &self,
        uri: &str,
        name: Option<&str>,
        scope: &str,
    ) -> Result<(Resource, Secret), AdminError> {
        check_length("name", name.unwrap_or_default())?;
        let mut registered =
            register_resource(uri, name, scope, self.flows.now()).map_err(|e| match e {
                ResourceError::Random => AdminError::Internal(e.to_string()),
                e => AdminError::Invalid(e.to_string()),
            })?;
        let hash = hashing::hash(registered.secret.clone())
            .await?
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        registered.client.secret_hash = Some(hash);
        self.flows
            .store
            .create_resource(&registered.resource, &registered.client)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AdminError::Conflict(format!(
                    "a resource {} is already registered",
                    registered.resource.uri
                )),
                e => e.into(),
            })?;
        tracing::info!(event = "admin_resource_created", resource = %registered.resource.uri);
        let created = self
            .change("resource create")
            .client(registered.client.id.as_str())
            .with("resource", registered.resource.uri.to_string());
        self.record([created]).await;
        Ok((registered.resource, registered.secret))
    }

    pub async fn resource(&self, uri: &str) -> Result<Resource, AdminError> {
        let uri = ResourceUri::parse(uri).map_err(|_| not_found("resource"))?;
        self.flows
            .store
            .get_resource(&uri)
            .await?
            .ok_or_else(|| not_found("resource"))
    }

    pub async fn update_resource(
        &self,
        uri: &str,
        change: ResourceChange,
    ) -> Result<Resource, AdminError> {
        let mut resource = self.resource(uri).await?;
        if let Some(name) = change.name {
            check_length("name", &name)?;
            let name = name.trim();
            resource.name = if name.is_empty() {
                resource.uri.to_string()
            } else {
                name.to_owned()
            };
        }
        if let Some(scope) = change.scope {
            resource.scope = Scope::parse(scope.trim())
                .map_err(|_| AdminError::Invalid(format!("invalid scope: {scope}")))?;
        }
        if !self.flows.store.update_resource(&resource).await? {
            return Err(not_found("resource"));
        }
        tracing::info!(event = "admin_resource_updated", resource = %resource.uri);
        let updated = self
            .change("resource update")
            .with("resource", resource.uri.to_string());
        self.record([updated]).await;
        Ok(resource)
    }

    /// Deletes a resource server and its credentials.
    pub async fn delete_resource(&self, uri: &str) -> Result<(), AdminError> {
        let resource = self.resource(uri).await?;
        let uri = &resource.uri;
        if !self
            .flows
            .store
            .delete_resource(uri, self.flows.now())
            .await?
        {
            return Err(not_found("resource"));
        }
        let client_id = resource.client_id.as_str();
        self.flows.clients.forget(client_id).await;
        tracing::info!(event = "admin_resource_deleted", resource = %uri);
        let events = [
            self.change("resource delete"),
            self.revoked(RevocationCause::ResourceDeleted),
        ]
        .map(|event| event.with("resource", uri.to_string()).client(client_id));
        self.record(events).await;
        Ok(())
    }
}
