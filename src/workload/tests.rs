use super::*;

const ID: &str = "e51ba2bf58d6c1f1a5ad1d7a2e1d9d1f6c0b6a7b1f7c6d5e4f3a2b1c0d9e8f7a";

fn workloads() -> Workloads {
    Workloads::start(RuntimeSockets::none())
}

#[test]
fn a_container_is_named_as_soon_as_its_facts_are_in() {
    let mut workloads = workloads();
    let path = format!("/machine.slice/libpod-{ID}.scope");
    let first = workloads.of(&path);
    assert_eq!(first.container_id.as_deref(), Some("e51ba2bf58d6"));
    assert_eq!(first.container, None);
    assert_eq!(first.container_label(), Some("e51ba2bf58d6"));
    assert_eq!(
        first.unit.as_deref(),
        Some(format!("libpod-{ID}.scope").as_str())
    );
    workloads.learn(ContainerFacts {
        id: ID.into(),
        name: "web".into(),
        image: "localhost/web:1".into(),
        labels: HashMap::new(),
    });
    let named = workloads.of(&path);
    assert_eq!(named.container.as_deref(), Some("web"));
    assert_eq!(named.image.as_deref(), Some("localhost/web:1"));
    assert_eq!(named.container_label(), Some("web"));
}

#[test]
fn the_kubelets_labels_name_pod_namespace_and_container() {
    let mut workloads = workloads();
    let labels = [
        ("io.kubernetes.pod.name", "api-7d4b9"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "api"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    workloads.learn(ContainerFacts {
        id: ID.into(),
        name: String::new(),
        image: "registry.local/api:2".into(),
        labels,
    });
    let workload = workloads.of(&format!("/k8s.io/{ID}"));
    assert_eq!(workload.pod.as_deref(), Some("api-7d4b9"));
    assert_eq!(workload.namespace.as_deref(), Some("shop"));
    assert_eq!(workload.container.as_deref(), Some("api"));
}

#[test]
fn a_unit_needs_no_runtime_and_unused_paths_are_forgotten() {
    let mut workloads = workloads();
    let workload = workloads.of("/system.slice/nginx.service");
    assert_eq!(workload.unit.as_deref(), Some("nginx.service"));
    assert_eq!(workload.container_id, None);
    for _ in 0..=KEEP_UNUSED {
        workloads.end_interval();
    }
    assert!(workloads.paths.is_empty());
}

#[test]
fn known_containers_are_bounded() {
    let mut known = KnownContainers::default();
    for n in 0..MAX_CONTAINERS + 10 {
        known.insert(ContainerFacts {
            id: format!("{n:064x}"),
            ..ContainerFacts::default()
        });
    }
    assert_eq!(known.facts.len(), MAX_CONTAINERS);
    assert!(known.get(&format!("{:064x}", 0)).is_none());
}

#[test]
fn a_runtime_cannot_make_netgraph_keep_much() {
    let mut labels: HashMap<String, String> = (0..1000)
        .map(|i| (format!("label-{i}"), "x".repeat(900_000 / 1000)))
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), "p".repeat(10_000));
    labels.insert("io.kubernetes.pod.namespace".into(), "shop".into());
    let facts = ContainerFacts::new(
        "a".repeat(10_000),
        &"é".repeat(1000),
        "i".repeat(5000),
        labels,
    );
    assert_eq!(facts.labels.len(), 2, "only the labels netgraph reads");
    assert_eq!(facts.labels["io.kubernetes.pod.name"].len(), 256);
    assert_eq!(facts.labels["io.kubernetes.pod.namespace"], "shop");
    assert_eq!(facts.id.len(), 128);
    // Cut on a character boundary.
    assert_eq!(facts.name, "é".repeat(128));
    assert_eq!(facts.image.len(), 512);
}
