//! containerd's own API (gRPC on its unix socket): containers with their labels (where
//! the kubelet's pod, namespace and container names are), across containerd's
//! namespaces (`k8s.io` for Kubernetes, `default` for ctr), and the events that
//! announce each container as it is created.

use super::ContainerFacts;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::{
    Container, GetContainerRequest, ListContainersRequest, ListNamespacesRequest, SubscribeRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use containerd_client::with_namespace;
use prost::Message;
use std::path::Path;
use std::time::Duration;

/// No answer within this is a runtime that does not answer.
const TIMEOUT: Duration = Duration::from_secs(5);

async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    Ok(tokio::time::timeout(TIMEOUT, containerd_client::connect(socket)).await??)
}

fn facts(container: Container) -> ContainerFacts {
    // containerd's containers have ids, no names: the kubelet's label names them.
    ContainerFacts::new(container.id, "", container.image, container.labels)
}

async fn namespaces(channel: &Channel) -> anyhow::Result<Vec<String>> {
    let mut client = NamespacesClient::new(channel.clone());
    let answer = tokio::time::timeout(
        TIMEOUT,
        client.list(ListNamespacesRequest {
            filter: String::new(),
        }),
    )
    .await??;
    Ok(answer
        .into_inner()
        .namespaces
        .into_iter()
        .map(|n| n.name)
        .collect())
}

/// Every container in every namespace.
pub async fn list(socket: &Path) -> anyhow::Result<Vec<ContainerFacts>> {
    let channel = channel(socket).await?;
    let mut found = Vec::new();
    for namespace in namespaces(&channel).await? {
        let mut client = ContainersClient::new(channel.clone());
        let request = with_namespace!(
            ListContainersRequest {
                filters: Vec::new()
            },
            namespace
        );
        let answer = tokio::time::timeout(TIMEOUT, client.list(request)).await??;
        found.extend(answer.into_inner().containers.into_iter().map(facts));
    }
    Ok(found)
}

async fn get(channel: &Channel, namespace: &str, id: &str) -> anyhow::Result<ContainerFacts> {
    let mut client = ContainersClient::new(channel.clone());
    let request = with_namespace!(GetContainerRequest { id: id.to_string() }, namespace);
    let answer = tokio::time::timeout(TIMEOUT, client.get(request)).await??;
    answer
        .into_inner()
        .container
        .map(facts)
        .ok_or_else(|| anyhow::anyhow!("containerd has no container {id}"))
}

/// One container by id, in whichever namespace holds it.
pub async fn inspect(socket: &Path, id: &str) -> anyhow::Result<ContainerFacts> {
    let channel = channel(socket).await?;
    for namespace in namespaces(&channel).await? {
        if let Ok(found) = get(&channel, &namespace, id).await {
            return Ok(found);
        }
    }
    anyhow::bail!("containerd has no container {id}")
}

/// Follows containerd's events, handing each created container to `created` (asked
/// for at once, while it exists). Returns when the stream ends or fails.
pub async fn follow_events(
    socket: &Path,
    mut created: impl FnMut(ContainerFacts),
) -> anyhow::Result<()> {
    let channel = channel(socket).await?;
    let mut client = EventsClient::new(channel.clone());
    let request = SubscribeRequest {
        filters: vec![r#"topic=="/containers/create""#.to_string()],
    };
    let mut events = client.subscribe(request).await?.into_inner();
    while let Some(envelope) = events.message().await? {
        let Some(event) = envelope.event else {
            continue;
        };
        let Ok(create) = containerd_client::events::ContainerCreate::decode(event.value.as_slice())
        else {
            continue;
        };
        if let Ok(found) = get(&channel, &envelope.namespace, &create.id).await {
            created(found);
        }
    }
    Ok(())
}
