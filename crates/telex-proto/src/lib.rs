//! Generated code for the `telex.v1` gRPC API (client, admin and node-to-node services), the
//! codec it uses, and the conversions between its messages and Telex's domain types
//! (`convert`): the only place protobuf meets `telex-types`.

pub mod convert;

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("telex.v1");
}

/// Protobuf with small starting buffers. tonic's default codec gives every stream an 8 KiB
/// encode and an 8 KiB decode buffer up front; most of our frames are a few hundred bytes and a
/// connected device holds its stream open for hours, so buffers start at 512 bytes and grow
/// only for the frames that need it.
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

fn lean() -> BufferSettings {
    BufferSettings::new(512, 32 * 1024)
}

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(lean())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(lean())
    }
}
