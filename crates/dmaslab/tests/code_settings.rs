//! Settings chosen in code for the `#[global_allocator]` take precedence over the environment;
//! the variables not chosen in code still apply. The environment has to be set before the
//! process's first allocation, so the test runs itself again as a child with it set.

use dmaslab::{heap, DmaSlab, Policy};
use std::process::Command;

#[global_allocator]
static GLOBAL: DmaSlab = DmaSlab::with_policy(Policy::A);

const CHILD: &str = "DMASLAB_TEST_CODE_SETTINGS_CHILD";

#[test]
fn policy_in_code_beats_dmaslab_policy() {
    if std::env::var_os(CHILD).is_some() {
        let s = heap().settings();
        assert_eq!(s.policy, Policy::A, "the policy chosen in code");
        assert_eq!(
            s.dma_minalign, 128,
            "DMASLAB_DMA_MINALIGN, not chosen in code"
        );
        let b = Box::new(1u8);
        assert_eq!(
            heap().usable_size(&*b as *const u8),
            128,
            "A with 128-byte lines"
        );
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "policy_in_code_beats_dmaslab_policy",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("DMASLAB_POLICY", "B")
        .env("DMASLAB_DMA_MINALIGN", "128")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
