use std::time::{Duration, SystemTime};

use rollguard_common::HostSample;

use super::*;

fn seqs(buffer: &mut ResendBuffer, max_batch: usize) -> Vec<Vec<u64>> {
    buffer
        .chunks(max_batch)
        .map(|chunk| chunk.iter().map(|(seq, _)| *seq).collect())
        .collect()
}

#[test]
fn acks_forget_and_a_full_buffer_drops_the_oldest() {
    let mut buffer = ResendBuffer::new();
    assert!(buffer.newest().is_none());
    let sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    for _ in 0..5 {
        buffer.push(&sample);
    }
    assert_eq!(buffer.newest().map(|(seq, _)| seq), Some(4));
    buffer.ack(1);
    assert_eq!(seqs(&mut buffer, 2), [vec![2, 3], vec![4]]);
    // A zero batch size from the coordinator still sends one at a time.
    assert_eq!(seqs(&mut buffer, 0), [vec![2], vec![3], vec![4]]);

    for _ in 0..SAMPLE_BUFFER {
        buffer.push(&sample);
    }
    let kept: Vec<u64> = seqs(&mut buffer, usize::MAX).concat();
    assert_eq!(kept.len(), SAMPLE_BUFFER);
    assert_eq!(kept.first(), Some(&5));
    assert_eq!(kept.last(), Some(&(4 + SAMPLE_BUFFER as u64)));
}
