//! Preprocessing on constructed frames with hand-computed expectations.

use sap_harness::env::palette::NTSC_RGB;
use sap_harness::env::preprocess::{
    clip_reward, luma, max_pool_gray_rgb, AreaResizer, FrameStack, PaletteLut,
};

#[test]
fn luma_uses_bt601_weights_rounded() {
    assert_eq!(luma(0, 0, 0), 0);
    assert_eq!(luma(255, 255, 255), 255);
    // 0.299 * 255 = 76.245 -> 76; 0.587 * 255 = 149.685 -> 150; 0.114 * 255 = 29.07 -> 29.
    assert_eq!(luma(255, 0, 0), 76);
    assert_eq!(luma(0, 255, 0), 150);
    assert_eq!(luma(0, 0, 255), 29);
    // 0.299 * 100 + 0.587 * 50 + 0.114 * 200 = 29.9 + 29.35 + 22.8 = 82.05 -> 82.
    assert_eq!(luma(100, 50, 200), 82);
}

#[test]
fn max_pool_takes_the_channelwise_maximum_before_grayscale() {
    // Pixel 0: red in frame a, green in frame b -> max is yellow (255, 255, 0):
    // (0.299 + 0.587) * 255 = 225.93 -> 226, brighter than either frame's gray.
    // Pixel 1: the same colour in both frames.
    let a = [255, 0, 0, 10, 20, 30];
    let b = [0, 255, 0, 10, 20, 30];
    let mut out = [0u8; 2];
    max_pool_gray_rgb(&a, &b, &mut out);
    assert_eq!(out, [226, luma(10, 20, 30)]);
    assert!(out[0] > luma(255, 0, 0).max(luma(0, 255, 0)));
}

#[test]
fn palette_fast_path_equals_rgb_pooling_on_every_index_pair() {
    let lut = PaletteLut::new(&NTSC_RGB);
    // Every pair of even palette indices, laid out as two 128x128 "screens" (+3 pixels so
    // the 8-pixel chunking leaves a remainder).
    let n = 128 * 128 + 3;
    let a: Vec<u8> = (0..n).map(|i| ((i % 128) * 2) as u8).collect();
    let b: Vec<u8> = (0..n).map(|i| (((i / 128) % 128) * 2) as u8).collect();
    let rgb = |idx: &[u8]| -> Vec<u8> {
        idx.iter()
            .flat_map(|&i| {
                let c = lut.rgb(i);
                [(c >> 16) as u8, (c >> 8) as u8, c as u8]
            })
            .collect()
    };
    let mut expected = vec![0; n];
    max_pool_gray_rgb(&rgb(&a), &rgb(&b), &mut expected);
    let mut fast = vec![0; n];
    lut.max_pool_gray(&a, &b, &mut fast);
    assert_eq!(fast, expected);
}

#[test]
fn area_resize_averages_overlapping_rows_by_their_overlap() {
    // 5x5 -> 2x2, scale 2.5. Output row 0 covers rows [0, 2.5): weights 1, 1, 0.5 (/2.5);
    // output row 1 covers [2.5, 5): weights 0.5, 1, 1. With input[i][j] = 10 i:
    //   row 0: (0 + 10 + 0.5 * 20) / 2.5 = 8;  row 1: (0.5 * 20 + 30 + 40) / 2.5 = 32.
    let src: Vec<u8> = (0..25).map(|k| (10 * (k / 5)) as u8).collect();
    let mut dst = [0u8; 4];
    AreaResizer::new(5, 5, 2, 2).resize(&src, &mut dst);
    assert_eq!(dst, [8, 8, 32, 32]);
    // The same along columns: input[i][j] = 10 j.
    let src: Vec<u8> = (0..25).map(|k| (10 * (k % 5)) as u8).collect();
    AreaResizer::new(5, 5, 2, 2).resize(&src, &mut dst);
    assert_eq!(dst, [8, 32, 8, 32]);
}

#[test]
fn area_resize_keeps_a_constant_screen_constant() {
    let src = vec![137u8; 210 * 160];
    let mut dst = vec![0u8; 84 * 84];
    AreaResizer::atari().resize(&src, &mut dst);
    assert!(dst.iter().all(|&p| p == 137));
}

#[test]
fn area_resize_of_one_bright_pixel_spreads_its_area_share() {
    // 210x160 -> 84x84: one output pixel covers 2.5 rows x 1.90476 columns (4.7619 px).
    // A lone 255 at (0, 0) lies wholly inside output (0, 0): 255 / 4.7619 = 53.55 -> 54.
    let mut src = vec![0u8; 210 * 160];
    src[0] = 255;
    let mut dst = vec![0u8; 84 * 84];
    AreaResizer::atari().resize(&src, &mut dst);
    assert_eq!(dst[0], 54);
    assert!(dst[1..].iter().all(|&p| p == 0));
}

#[test]
fn frame_stack_orders_frames_oldest_first_and_reset_zeroes_it() {
    let mut stack = FrameStack::new(4, 2);
    stack.push(&[1, 1]);
    // A fresh episode: zeros, then the first frame last.
    assert_eq!(stack.to_vec(), [0, 0, 0, 0, 0, 0, 1, 1]);
    for f in 2..=5u8 {
        stack.push(&[f, f]);
    }
    assert_eq!(stack.to_vec(), [2, 2, 3, 3, 4, 4, 5, 5]);
    stack.clear();
    stack.push(&[9, 9]);
    assert_eq!(stack.to_vec(), [0, 0, 0, 0, 0, 0, 9, 9]);
}

#[test]
fn reward_clipping_bounds_rewards_to_unit_range() {
    assert_eq!(clip_reward(21.0), 1.0);
    assert_eq!(clip_reward(-3.0), -1.0);
    assert_eq!(clip_reward(0.5), 0.5);
}
