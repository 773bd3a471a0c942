//! Decoding under limits, orientation, resizing and re-encoding: the whole
//! image pipeline, free of the host so that it runs natively in tests.
//!
//! Nothing of the source's metadata is copied: the encoders write pixels
//! only (JPEG gets a bare JFIF header, PNG its image chunks), so EXIF
//! (GPS, camera, dates), XMP, ICC profiles and comments all stay behind.

use std::collections::BTreeMap;
use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use serde::Deserialize;

/// What the plugin asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Variant names and the box (in pixels, square) each must fit in.
    pub sizes: BTreeMap<String, u32>,
    /// The most pixels (width × height) a source may have to be decoded.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// The most bytes a decoder may allocate.
    #[serde(default = "default_max_alloc")]
    pub max_alloc: u64,
    /// The largest source file, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// JPEG quality of opaque variants, 1 to 100.
    #[serde(default = "default_quality")]
    pub quality: u8,
}

fn default_max_pixels() -> u64 {
    40_000_000
}
fn default_max_alloc() -> u64 {
    32 << 20
}
fn default_max_bytes() -> u64 {
    32 << 20
}
fn default_quality() -> u8 {
    82
}

/// Largest box a variant may ask for.
const MAX_SIZE: u32 = 4096;
/// Most scans a JPEG may have (progressive files have about ten): each
/// costs a pass over the whole image, so thousands of tiny repeated scans
/// would hold the worker for its whole deadline.
const MAX_JPEG_SCANS: usize = 64;

/// One variant made.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name, from the params.
    pub name: String,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    /// Its pixels across.
    pub width: u32,
    /// Its pixels down.
    pub height: u32,
    /// The encoded file.
    pub bytes: Vec<u8>,
}

/// What one source gave.
#[derive(Debug, Clone)]
pub struct Made {
    /// The source's width, orientation applied.
    pub width: u32,
    /// The source's height, orientation applied.
    pub height: u32,
    /// One per size asked for.
    pub variants: Vec<Variant>,
}

/// Makes every variant `params` asks for from the image file `bytes`.
pub fn make(bytes: &[u8], params: &Params) -> Result<Made, String> {
    if params.sizes.is_empty() {
        return Err("params.sizes names no variant".into());
    }
    if let Some((name, size)) = params.sizes.iter().find(|(_, size)| **size == 0 || **size > MAX_SIZE) {
        return Err(format!("params.sizes.{name}: {size} px; a box is 1 to {MAX_SIZE} px"));
    }
    if !(1..=100).contains(&params.quality) {
        return Err(format!("params.quality: {}; 1 to 100", params.quality));
    }
    let largest = params.sizes.values().copied().max().unwrap_or(1);
    let (mut image, (width, height)) = decode(bytes, params, largest)?;
    // Only the largest variant's box is needed from here on.
    if image.width() > largest || image.height() > largest {
        image = image.thumbnail(largest, largest);
    }
    let mut variants = Vec::with_capacity(params.sizes.len());
    for (name, &size) in &params.sizes {
        let fitted =
            if image.width() > size || image.height() > size { image.thumbnail(size, size) } else { image.clone() };
        variants.push(encode(name, &fitted, params.quality)?);
    }
    Ok(Made { width, height, variants })
}

/// The decoded image (orientation applied, possibly scaled down on the way
/// to at least `largest` px on its long side) and the source's full size.
fn decode(bytes: &[u8], params: &Params, largest: u32) -> Result<(DynamicImage, (u32, u32)), String> {
    let (mut image, orientation, (width, height)) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes, params, largest)?
    } else {
        decode_other(bytes, params)?
    };
    image.apply_orientation(orientation);
    let size = if matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    ) {
        (height, width)
    } else {
        (width, height)
    };
    Ok((image, size))
}

fn check_pixels(width: u32, height: u32, params: &Params) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > params.max_pixels {
        return Err(format!(
            "the image is {width}×{height} pixels ({pixels}); images of at most {} pixels get variants",
            params.max_pixels
        ));
    }
    Ok(())
}

/// JPEG through `jpeg-decoder`, which scales while it decodes (by 1/2, 1/4
/// or 1/8): a 12-megapixel photo becomes a 320 px thumbnail without ever
/// being whole in memory.
fn decode_jpeg(bytes: &[u8], params: &Params, largest: u32) -> Result<(DynamicImage, Orientation, (u32, u32)), String> {
    // A start-of-scan marker cannot occur inside entropy-coded data (a 0xFF
    // there is followed by 0x00 or a restart marker), so counting the pairs
    // counts the scans.
    let scans = bytes.windows(2).filter(|pair| *pair == [0xFF, 0xDA]).count();
    if scans > MAX_JPEG_SCANS {
        return Err(format!("the JPEG has {scans} scans; JPEGs of at most {MAX_JPEG_SCANS} get variants"));
    }
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(|e| format!("not a readable JPEG: {e}"))?;
    let info = decoder.info().ok_or("not a readable JPEG: no frame header")?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, params)?;
    decoder.set_max_decoding_buffer_size(usize::try_from(params.max_alloc).unwrap_or(usize::MAX));
    let want = u16::try_from(largest).unwrap_or(u16::MAX);
    decoder.scale(want, want).map_err(|e| format!("not a readable JPEG: {e}"))?;
    let pixels = decoder.decode().map_err(|e| format!("not a readable JPEG: {e}"))?;
    let info = decoder.info().ok_or("not a readable JPEG: no frame header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        other => return Err(format!("JPEGs in {other:?} get no variants; RGB and greyscale do")),
    }
    .ok_or("the JPEG decoder returned fewer pixels than its frame")?;
    let orientation = decoder.exif_data().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    Ok((image, orientation, (width, height)))
}

/// PNG, GIF (its first frame) and WebP through `image`, whose limits
/// refuse a size or an allocation past ours before decoding.
fn decode_other(bytes: &[u8], params: &Params) -> Result<(DynamicImage, Orientation, (u32, u32)), String> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image type that gets variants (JPEG, PNG, GIF, WebP)".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| format!("not a readable image: {e}"))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, params)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(params.max_alloc);
    decoder.set_limits(limits).map_err(|e| format!("the image is past the decoder's limits: {e}"))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| format!("not a readable image: {e}"))?;
    Ok((image, orientation, (width, height)))
}

/// Images with any transparent pixel as PNG, the rest as JPEG (8 bits per
/// channel).
fn encode(name: &str, image: &DynamicImage, quality: u8) -> Result<Variant, String> {
    let mut bytes = Vec::new();
    let failed = |e: image::ImageError| format!("encoding variant `{name}`: {e}");
    let rgba = image.color().has_alpha().then(|| image.to_rgba8());
    let content_type = if let Some(rgba) = rgba.filter(|rgba| rgba.pixels().any(|p| p.0[3] < u8::MAX)) {
        rgba.write_with_encoder(PngEncoder::new(&mut bytes)).map_err(failed)?;
        "image/png"
    } else if image.color().has_color() {
        image.to_rgb8().write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, quality)).map_err(failed)?;
        "image/jpeg"
    } else {
        image.to_luma8().write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, quality)).map_err(failed)?;
        "image/jpeg"
    };
    Ok(Variant { name: name.to_owned(), content_type, width: image.width(), height: image.height(), bytes })
}

#[cfg(test)]
mod tests {
    use image::{ImageEncoder, Rgba};

    use super::*;

    fn params(sizes: &[(&str, u32)]) -> Params {
        let sizes: serde_json::Map<String, serde_json::Value> =
            sizes.iter().map(|(name, size)| ((*name).to_owned(), (*size).into())).collect();
        serde_json::from_value(serde_json::json!({ "sizes": sizes })).unwrap()
    }

    fn png(width: u32, height: u32, alpha: u8) -> Vec<u8> {
        let pixels = image::RgbaImage::from_pixel(width, height, Rgba([10, 200, 30, alpha]));
        let mut bytes = Vec::new();
        PngEncoder::new(&mut bytes)
            .write_image(pixels.as_raw(), width, height, image::ExtendedColorType::Rgba8)
            .unwrap();
        bytes
    }

    #[test]
    fn each_size_fits_its_box_and_small_images_are_never_enlarged() {
        let made = make(&png(800, 400, 255), &params(&[("thumb", 100), ("big", 2000)])).unwrap();
        assert_eq!((made.width, made.height), (800, 400));
        let size = |name: &str| made.variants.iter().find(|v| v.name == name).map(|v| (v.width, v.height)).unwrap();
        assert_eq!(size("thumb"), (100, 50));
        assert_eq!(size("big"), (800, 400), "never enlarged");
    }

    #[test]
    fn transparency_keeps_png_and_opaque_images_become_jpeg_even_with_an_alpha_channel() {
        let opaque = make(&png(64, 64, 255), &params(&[("t", 32)])).unwrap();
        assert_eq!(opaque.variants[0].content_type, "image/jpeg");
        assert!(opaque.variants[0].bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        let clear = make(&png(64, 64, 100), &params(&[("t", 32)])).unwrap();
        assert_eq!(clear.variants[0].content_type, "image/png");
        let decoded = image::load_from_memory(&clear.variants[0].bytes).unwrap();
        assert_eq!(decoded.to_rgba8().get_pixel(5, 5).0[3], 100, "alpha survives");
    }

    #[test]
    fn limits_and_bad_input_are_refused_with_the_reason() {
        let mut tight = params(&[("t", 32)]);
        tight.max_pixels = 1000;
        let err = make(&png(100, 100, 255), &tight).unwrap_err();
        assert!(err.contains("100×100 pixels") && err.contains("1000"), "{err}");
        assert!(make(b"not an image at all", &params(&[("t", 32)])).unwrap_err().contains("not an image type"));
        assert!(make(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], &params(&[("t", 32)])).unwrap_err().contains("JPEG"));
        assert!(make(&png(8, 8, 255), &params(&[])).unwrap_err().contains("no variant"));
        assert!(make(&png(8, 8, 255), &params(&[("huge", 5000)])).unwrap_err().contains("params.sizes.huge"));
        let mut rescanned = vec![0xFF, 0xD8];
        rescanned.extend(std::iter::repeat_n([0xFF, 0xDA, 0, 2], 65).flatten());
        let err = make(&rescanned, &params(&[("t", 32)])).unwrap_err();
        assert!(err.contains("65 scans"), "{err}");
        let truncated = &png(300, 300, 255)[..60];
        assert!(make(truncated, &params(&[("t", 32)])).is_err());
    }

    #[test]
    fn a_jpeg_is_decoded_scaled_down_to_its_box() {
        let pixels =
            image::RgbImage::from_fn(1600, 800, |x, _| image::Rgb(if x < 800 { [255, 0, 0] } else { [0, 0, 255] }));
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(pixels.as_raw(), 1600, 800, image::ExtendedColorType::Rgb8)
            .unwrap();
        let made = make(&jpeg, &params(&[("t", 200)])).unwrap();
        assert_eq!((made.width, made.height), (1600, 800));
        let variant = &made.variants[0];
        assert_eq!((variant.width, variant.height), (200, 100));
        let decoded = image::load_from_memory(&variant.bytes).unwrap().to_rgb8();
        assert!(decoded.get_pixel(20, 50).0[0] > 200 && decoded.get_pixel(180, 50).0[2] > 200);
    }
}
