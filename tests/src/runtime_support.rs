//! Support for the runtime conformance tests and benchmark: the Linux harness (temp data dir,
//! unique cgroup parent and bridge, busybox image) and the throwaway driver process.

/// Entry of `kommit-runtime-helper drive DATA_DIR HELPER CGROUP_PARENT POD_JSON CTR_JSON`:
/// create the pod and container, start it, print `ready`, then wait to be SIGKILLed.
pub fn drive_main(args: &[String]) -> i32 {
    use kommit_runtime::ContainerRuntime;
    let [data, helper, parent, pod, ctr] = args else {
        eprintln!("usage: drive DATA_DIR HELPER CGROUP_PARENT POD_JSON CTR_JSON");
        return 2;
    };
    let run = || -> Result<(), String> {
        let images = std::sync::Arc::new(
            kommit_runtime::images::ImageStore::open(std::path::Path::new(data))
                .map_err(|e| e.to_string())?,
        );
        let rt = kommit_runtime::linux::LinuxRuntime::new(
            kommit_runtime::linux::LinuxConfig {
                data_dir: data.into(),
                helper: helper.into(),
                cgroup_parent: parent.clone(),
            },
            images,
        )
        .map_err(|e| e.to_string())?;
        let pod: kommit_runtime::spec::PodSpec =
            serde_json::from_str(pod).map_err(|e| e.to_string())?;
        let ctr: kommit_runtime::spec::ContainerSpec =
            serde_json::from_str(ctr).map_err(|e| e.to_string())?;
        rt.create_pod(&pod).map_err(|e| e.to_string())?;
        rt.create_container(&pod.id, &ctr)
            .map_err(|e| e.to_string())?;
        rt.start_container(&pod.id, &ctr.name)
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    match run() {
        Ok(()) => {
            println!("ready");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Err(e) => {
            eprintln!("drive: {e}");
            1
        }
    }
}
