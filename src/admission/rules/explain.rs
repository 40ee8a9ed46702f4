//! What every built-in rule checks and how to fix what it reports: the one source for
//! `portcullis rules` and anything else that explains a rule ([`super::Rule::checks`],
//! [`super::Rule::fix`]). Kept apart from the rule code so the wording can be read and
//! reviewed as one list; a test asserts every catalogue id has an entry.

/// (id, what it checks, how to fix it).
const ENTRIES: &[(&str, &str, &str)] = &[
    // Resources.
    (
        "cpuRequestsMissing",
        "Every container and sidecar sets resources.requests.cpu, so the scheduler can place the pod.",
        "Set resources.requests.cpu to what the container needs at steady load (e.g. 100m).",
    ),
    (
        "memoryRequestsMissing",
        "Every container and sidecar sets resources.requests.memory, so the scheduler can place the pod.",
        "Set resources.requests.memory to the container's working set (e.g. 128Mi).",
    ),
    (
        "memoryLimitsMissing",
        "Every container and sidecar sets resources.limits.memory, so a leak is OOM-killed instead of starving the node.",
        "Set resources.limits.memory, usually equal to or a little above the request.",
    ),
    (
        "cpuLimitsMissing",
        "Every container and sidecar sets resources.limits.cpu.",
        "Set resources.limits.cpu, or set the rule to off if you run without CPU limits on purpose.",
    ),
    (
        "requestAboveLimit",
        "No CPU or memory request is larger than its limit (the API server rejects those).",
        "Lower the request or raise the limit so request <= limit.",
    ),
    (
        "qosClassAnnotation",
        "Mutation only: records the pod's resulting QoS class in the portcullis.io/qos-class template annotation.",
        "Nothing to fix; turn the mutation off if you do not want the annotation.",
    ),
    // Probes.
    (
        "livenessProbeMissing",
        "Long-running containers have a livenessProbe, so a hung process is restarted.",
        "Add a livenessProbe (httpGet or exec) that fails only when the process must be restarted.",
    ),
    (
        "readinessProbeMissing",
        "Long-running containers have a readinessProbe, so traffic reaches only pods that can serve.",
        "Add a readinessProbe that fails while the container cannot take requests.",
    ),
    (
        "livenessProbeTcpOnly",
        "The livenessProbe does more than open a TCP port (a deadlocked server still accepts connections).",
        "Use an httpGet, grpc or exec liveness check that exercises the application.",
    ),
    (
        "livenessProbeNoStartupGrace",
        "Liveness does not start probing at once, so a slow start is not killed again and again.",
        "Add a startupProbe, or set initialDelaySeconds on the livenessProbe to cover start-up.",
    ),
    (
        "readinessSlowerThanLiveness",
        "Readiness fails no later than liveness, so a failing pod leaves rotation before it is restarted.",
        "Make readiness periodSeconds x failureThreshold smaller than liveness's.",
    ),
    (
        "probeHandlerCount",
        "Every probe has exactly one handler: exec, httpGet, tcpSocket or grpc.",
        "Keep exactly one handler in each probe.",
    ),
    // Images.
    (
        "tagNotSpecified",
        "Every image names a tag or digest other than latest.",
        "Pin the image to a version tag or, better, a digest (image@sha256:...).",
    ),
    (
        "pullPolicyNotAlways",
        "imagePullPolicy is Always (Polaris' check).",
        "Set imagePullPolicy: Always, or use floatingImagePullPolicy which only asks it for floating tags.",
    ),
    (
        "floatingImagePullPolicy",
        "Images without a tag or tagged latest are pulled with imagePullPolicy Always.",
        "Pin the image to a tag or digest, or set imagePullPolicy: Always.",
    ),
    // Storage.
    (
        "emptyDirSizeLimitMissing",
        "Every emptyDir volume sets sizeLimit, so one pod cannot fill the node's disk.",
        "Set emptyDir.sizeLimit (e.g. 1Gi).",
    ),
    (
        "hostPathSet",
        "No volume mounts a hostPath from the node.",
        "Use a PersistentVolumeClaim, emptyDir, ConfigMap or Secret instead of hostPath.",
    ),
    // Lifecycle.
    (
        "shellEntrypoint",
        "A shell command (sh -c) execs the server or traps TERM, so SIGTERM reaches the app instead of stopping at the shell.",
        "Start the server with exec (sh -c 'exec app ...') or trap TERM and forward it.",
    ),
    (
        "terminationGracePeriodTooShort",
        "terminationGracePeriodSeconds is longer than the preStop sleep, so the app gets time to shut down.",
        "Raise terminationGracePeriodSeconds above the preStop sleep plus the app's shutdown time.",
    ),
    // Workloads.
    (
        "selectorMismatch",
        "A workload's selector matches its pod template's labels.",
        "Make spec.selector match labels present in spec.template.metadata.labels.",
    ),
    (
        "jobRestartPolicy",
        "Job and CronJob pods use restartPolicy Never or OnFailure.",
        "Set spec.template.spec.restartPolicy to Never or OnFailure.",
    ),
    (
        "rollingUpdateStuck",
        "A rolling update can make progress: maxUnavailable and maxSurge are not both zero.",
        "Set maxSurge or maxUnavailable above zero.",
    ),
    (
        "statefulSetServiceName",
        "A StatefulSet names its governing headless Service in spec.serviceName.",
        "Create a headless Service (clusterIP: None) and set spec.serviceName to it.",
    ),
    (
        "hostIPCSet",
        "The pod does not share the node's IPC namespace (hostIPC).",
        "Remove hostIPC: true.",
    ),
    (
        "hostPIDSet",
        "The pod does not share the node's process namespace (hostPID).",
        "Remove hostPID: true.",
    ),
    (
        "hostNetworkSet",
        "The pod does not use the node's network namespace (hostNetwork).",
        "Remove hostNetwork: true and expose the pod through a Service.",
    ),
    (
        "hostPortSet",
        "No container port binds a hostPort on the node.",
        "Remove hostPort and reach the pod through a Service.",
    ),
    (
        "hostProcess",
        "No Windows container runs as a HostProcess container.",
        "Remove windowsOptions.hostProcess: true.",
    ),
    (
        "priorityClassNotSet",
        "The pod template names a priorityClassName.",
        "Set spec.priorityClassName to one of the cluster's PriorityClasses.",
    ),
    (
        "topologySpreadConstraint",
        "The pod template spreads replicas with topologySpreadConstraints.",
        "Add a topologySpreadConstraint on topology.kubernetes.io/zone or kubernetes.io/hostname.",
    ),
    // Replicas and availability.
    (
        "deploymentMissingReplicas",
        "A Deployment runs more than one replica (or an HPA manages it).",
        "Set spec.replicas to 2 or more, or attach a HorizontalPodAutoscaler.",
    ),
    (
        "statefulSetMissingReplicas",
        "A StatefulSet runs more than one replica.",
        "Set spec.replicas to 2 or more.",
    ),
    (
        "missingPodDisruptionBudget",
        "A replicated workload is covered by a PodDisruptionBudget.",
        "Add a PodDisruptionBudget whose selector matches the pods (e.g. maxUnavailable: 1).",
    ),
    (
        "pdbDisruptionsIsZero",
        "A PodDisruptionBudget allows at least one disruption, so node drains can finish.",
        "Lower minAvailable below the replica count, or set maxUnavailable to 1 or more.",
    ),
    (
        "pdbMinAvailableGreaterThanHPAMinReplicas",
        "A PDB's minAvailable is below the HPA's minReplicas, so drains work at minimum scale.",
        "Lower minAvailable or raise the HPA's minReplicas.",
    ),
    (
        "hpaMaxAvailability",
        "An HPA's maxReplicas is above minReplicas, so it can scale out.",
        "Raise maxReplicas above minReplicas.",
    ),
    (
        "hpaMinAvailability",
        "An HPA keeps at least two replicas (minReplicas >= 2).",
        "Set minReplicas to 2 or more.",
    ),
    // Labels and metadata.
    (
        "requiredLabelsMissing",
        "Deployments and Services carry every label listed in the requiredLabels setting.",
        "Add the missing labels, or adjust requiredLabels in the settings.",
    ),
    (
        "defaultMetadata",
        "Mutation: adds the configured default labels and annotations that are missing.",
        "Nothing to fix; set the defaults in the settings or turn the mutation off.",
    ),
    (
        "metadataAndInstanceMismatched",
        "A workload's app.kubernetes.io/instance label exists and equals its name.",
        "Set the app.kubernetes.io/instance label to the workload's metadata.name.",
    ),
    // Security context.
    (
        "runAsRootAllowed",
        "Pods and containers set runAsNonRoot: true (or a non-zero runAsUser).",
        "Set securityContext.runAsNonRoot: true and run the image as a non-root user.",
    ),
    (
        "runAsPrivileged",
        "No container sets securityContext.privileged: true.",
        "Remove privileged: true; add only the specific capabilities the app needs.",
    ),
    (
        "privilegeEscalationAllowed",
        "Containers set allowPrivilegeEscalation: false.",
        "Set securityContext.allowPrivilegeEscalation: false.",
    ),
    (
        "notReadOnlyRootFilesystem",
        "Containers set readOnlyRootFilesystem: true.",
        "Set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where the app writes.",
    ),
    (
        "insecureCapabilities",
        "Containers drop the capabilities Polaris calls insecure (e.g. NET_RAW, CHOWN, SETUID).",
        "Add capabilities.drop: [ALL] and add back only what the app needs.",
    ),
    (
        "dangerousCapabilities",
        "No container adds ALL, SYS_ADMIN or NET_ADMIN.",
        "Remove those from capabilities.add.",
    ),
    (
        "restrictedCapabilities",
        "Containers add no capability outside the allowed list (Pod Security restricted profile).",
        "Drop ALL and add back at most NET_BIND_SERVICE.",
    ),
    (
        "linuxHardening",
        "Containers use a seccomp, AppArmor or SELinux profile, or drop all capabilities.",
        "Set securityContext.seccompProfile.type: RuntimeDefault (pod or container level).",
    ),
    (
        "procMount",
        "No container sets procMount to Unmasked.",
        "Remove securityContext.procMount or set it to Default.",
    ),
    // Service accounts and secrets.
    (
        "automountServiceAccountToken",
        "Pods do not mount a service account token they do not need.",
        "Set automountServiceAccountToken: false on the pod or its ServiceAccount.",
    ),
    (
        "sensitiveContainerEnvVar",
        "No container env var named like a credential has a literal value.",
        "Move the value into a Secret and use valueFrom.secretKeyRef.",
    ),
    (
        "sensitiveConfigmapContent",
        "No ConfigMap key is named like a credential or holds a private key.",
        "Move the data into a Secret.",
    ),
    // Network.
    (
        "missingNetworkPolicy",
        "A NetworkPolicy in the namespace selects the pods with both ingress and egress rules.",
        "Add a NetworkPolicy selecting the pods, with policyTypes Ingress and Egress.",
    ),
    (
        "tlsSettingsMissing",
        "An Ingress has a spec.tls section, so it is not served over plain HTTP only.",
        "Add spec.tls with the hosts and a kubernetes.io/tls Secret (e.g. from cert-manager).",
    ),
    // RBAC.
    (
        "clusterrolePodExecAttach",
        "A ClusterRole does not grant pods/exec or pods/attach.",
        "Remove pods/exec and pods/attach from the ClusterRole's rules.",
    ),
    (
        "rolePodExecAttach",
        "A Role does not grant pods/exec or pods/attach.",
        "Remove pods/exec and pods/attach from the Role's rules.",
    ),
    (
        "clusterrolebindingClusterAdmin",
        "A ClusterRoleBinding does not bind cluster-admin (or a role granting everything).",
        "Bind a narrower ClusterRole with only the verbs and resources needed.",
    ),
    (
        "clusterrolebindingPodExecAttach",
        "A ClusterRoleBinding does not bind a ClusterRole granting pods/exec or pods/attach.",
        "Bind a role without pods/exec and pods/attach.",
    ),
    (
        "rolebindingClusterAdminClusterRole",
        "A RoleBinding does not bind the cluster-admin ClusterRole.",
        "Bind a narrower Role or ClusterRole.",
    ),
    (
        "rolebindingClusterAdminRole",
        "A RoleBinding does not bind a Role that grants everything.",
        "Bind a Role listing only the verbs and resources needed.",
    ),
    (
        "rolebindingClusterRolePodExecAttach",
        "A RoleBinding does not bind a ClusterRole granting pods/exec or pods/attach.",
        "Bind a role without pods/exec and pods/attach.",
    ),
    (
        "rolebindingRolePodExecAttach",
        "A RoleBinding does not bind a Role granting pods/exec or pods/attach.",
        "Bind a role without pods/exec and pods/attach.",
    ),
    // Ingress.
    (
        "ingressInvalidSpec",
        "The Ingress can be compiled: valid hosts, paths, path types and backends.",
        "Correct the fields named in the message (see `portcullis check` for the JSON pointer).",
    ),
    (
        "ingressInvalidAnnotation",
        "Annotations portcullis implements have valid values.",
        "Correct the annotation value named in the message, or remove the annotation.",
    ),
    (
        "ingressInvalidRegex",
        "Regex paths (use-regex) compile.",
        "Fix the path's regular expression, or drop nginx.ingress.kubernetes.io/use-regex.",
    ),
    (
        "ingressSnippetAnnotation",
        "No *-snippet annotation injects raw nginx configuration.",
        "Remove the snippet; use the matching portcullis annotation or a policy instead.",
    ),
    (
        "ingressAnnotationIgnored",
        "No ingress-nginx annotation is unimplemented, overridden or without effect.",
        "Remove the annotation or replace it with a supported one (see the message).",
    ),
    (
        "ingressPathConflict",
        "No other Ingress already claims the same host, path kind and path.",
        "Change the host or path, or merge the paths into the Ingress that owns them.",
    ),
    (
        "ingressCanaryWithoutMain",
        "A canary path has a main route (same host and path) to join.",
        "Apply the main Ingress for that host and path, or fix the canary's host/path.",
    ),
    (
        "ingressBackendMissing",
        "Every backend Service exists and has the named port.",
        "Create the Service or correct service.name / service.port in the Ingress.",
    ),
    (
        "ingressTlsSecretMissing",
        "Every spec.tls Secret exists and is of type kubernetes.io/tls.",
        "Create the TLS Secret (or let cert-manager issue it), or correct secretName.",
    ),
];

fn entry(id: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    ENTRIES.iter().find(|(i, _, _)| *i == id)
}

/// What rule `id` checks; empty for an id this list does not know.
pub fn checks(id: &str) -> &'static str {
    entry(id).map_or("", |e| e.1)
}

/// How to fix what rule `id` reports; empty for an id this list does not know.
pub fn fix(id: &str) -> &'static str {
    entry(id).map_or("", |e| e.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_rule_is_explained_and_no_entry_is_stale() {
        let ids: Vec<&str> = super::super::catalogue().iter().map(|r| r.id()).collect();
        for id in &ids {
            assert!(!checks(id).is_empty(), "{id} has no `checks` text");
            assert!(!fix(id).is_empty(), "{id} has no `fix` text");
        }
        for (id, _, _) in ENTRIES {
            assert!(
                ids.contains(id),
                "{id} is explained but not in the catalogue"
            );
        }
    }
}
