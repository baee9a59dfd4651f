//! What a cgroup v2 path says by itself: the systemd unit, and the container (its
//! runtime and id) where a runtime made the cgroup. Naming the container (name, image,
//! pod) is the runtimes' part.

/// The container runtimes whose cgroups are recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    Crio,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "cri-o",
        }
    }
}

/// A container as its cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// `None`: a bare container id in a path no runtime marks (containerd's own
    /// `/<namespace>/<id>`, Kubernetes' cgroupfs layout); every runtime is asked.
    pub runtime: Option<Runtime>,
    /// The full id (64 hexadecimal digits).
    pub id: String,
}

/// What a cgroup path tells by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupOrigin {
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`).
    pub unit: Option<String>,
    pub container: Option<ContainerRef>,
    /// The Kubernetes pod's UID, from the kubelet's `pod<uid>` cgroup.
    pub pod_uid: Option<String>,
}

/// Prefixes of a container's cgroup name, and the runtime they mark.
const MARKED: [(&str, Runtime); 4] = [
    ("libpod-", Runtime::Podman),
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
];

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A component's container, if it names one: `libpod-<id>.scope`, `libpod-<id>`,
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, or a bare id
/// (Docker's cgroupfs driver puts it under `/docker`).
fn container_in(component: &str, parent: Option<&str>) -> Option<ContainerRef> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in MARKED {
        if let Some(id) = name.strip_prefix(prefix) {
            // `libpod-conmon-<id>` is podman's monitor, not the container.
            return is_container_id(id).then(|| ContainerRef {
                runtime: Some(runtime),
                id: id.to_string(),
            });
        }
    }
    is_container_id(name).then(|| ContainerRef {
        runtime: (parent == Some("docker")).then_some(Runtime::Docker),
        id: name.to_string(),
    })
}

/// Reads a cgroup v2 path such as `/system.slice/docker-<id>.scope`.
pub fn origin(path: &str) -> CgroupOrigin {
    let mut origin = CgroupOrigin::default();
    let mut parent = None;
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if let Some(container) = container_in(component, parent) {
            origin.container = Some(container);
        }
        if component.ends_with(".service") || component.ends_with(".scope") {
            origin.unit = Some(component.to_string());
        }
        if let Some(uid) = pod_uid(component) {
            origin.pod_uid = Some(uid);
        }
        parent = Some(component);
    }
    origin
}

/// `kubepods-besteffort-pod<uid>.slice` (systemd driver, `_` for `-`) or `pod<uid>`.
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let start = name.rfind("pod")?;
    let uid = &name[start + 3..];
    let looks_like_uid = uid.len() == 36
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    (looks_like_uid && (start == 0 || name[..start].ends_with('-'))).then(|| uid.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "e51ba2bf58d6c1f1a5ad1d7a2e1d9d1f6c0b6a7b1f7c6d5e4f3a2b1c0d9e8f7a";

    fn container(runtime: Option<Runtime>) -> Option<ContainerRef> {
        Some(ContainerRef {
            runtime,
            id: ID.into(),
        })
    }

    #[test]
    fn systemd_units() {
        assert_eq!(
            origin("/system.slice/nginx.service").unit.as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            origin("/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope")
                .unit
                .as_deref(),
            Some("run-r1.scope")
        );
        assert_eq!(
            origin("/user.slice/user-1000.slice/session-3.scope")
                .unit
                .as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(origin("/").unit, None);
        assert_eq!(origin("/init.scope").container, None);
    }

    #[test]
    fn podman_and_docker() {
        for path in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/libpod_parent/libpod-{ID}"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
        ] {
            assert_eq!(
                origin(&path).container,
                container(Some(Runtime::Podman)),
                "{path}"
            );
        }
        assert_eq!(
            origin(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container,
            None
        );
        assert_eq!(
            origin(&format!("/system.slice/docker-{ID}.scope")).container,
            container(Some(Runtime::Docker))
        );
        assert_eq!(
            origin(&format!("/docker/{ID}")).container,
            container(Some(Runtime::Docker))
        );
    }

    #[test]
    fn containerd_cri_o_and_kubernetes() {
        let pod = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let systemd_pod = pod.replace('-', "_");
        let cri = origin(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_pod}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(cri.container, container(Some(Runtime::Containerd)));
        assert_eq!(cri.pod_uid.as_deref(), Some(pod));
        let cgroupfs = origin(&format!("/kubepods/besteffort/pod{pod}/{ID}"));
        assert_eq!(cgroupfs.container, container(None));
        assert_eq!(cgroupfs.pod_uid.as_deref(), Some(pod));
        assert_eq!(origin(&format!("/default/{ID}")).container, container(None));
        assert_eq!(
            origin(&format!("/kubepods.slice/crio-{ID}.scope")).container,
            container(Some(Runtime::Crio))
        );
        // Not ids: too short, or not hexadecimal.
        assert_eq!(origin("/docker/abc").container, None);
        assert_eq!(origin("/system.slice/podman.service").container, None);
    }
}
