//! HTTP/1.1 as the gateway's connection layer and handlers need it, as pure functions:
//! request heads (`head`, on top of httparse), chunked body framing (`chunked`), Range
//! (`range`), dates (`date`), media types (`mime`), percent-encoding (`escape`) and hosts and origins (`url`).

pub mod chunked;
pub mod date;
pub mod escape;
pub mod head;
pub mod mime;
pub mod range;
pub mod url;
