//! Walking a paged list: [`paginate`] follows each page's `next` token, by offset or by cursor
//! alike, and the helpers below read every item of a list through a [`TicketReader`].

use std::{future::Future, pin::Pin};

use futures::{Stream, TryStreamExt, stream};

use super::{ListQuery, Note, Page, Result, Ticket, TicketReader, TicketingError};

/// A boxed stream of items from a paged list.
pub type PageStream<'a, T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'a>>;

/// Page size the paging helpers ask for when the query sets none; Unified.to caps lists at 100.
pub const PAGE_SIZE: u32 = 100;

/// Most pages one listing walks: a runaway guard far above any real list (a million items at
/// the usual page size), for a backend whose paging never ends.
pub const MAX_PAGES: usize = 10_000;

/// Walks every page of a list as a stream, from `query.page` (the first page when unset) until a
/// page has no `next`; stops at the first error.
///
/// Every page asks for `query.limit` items ([`PAGE_SIZE`] when unset). A backend that ignores the
/// page asked for (the same items again, or its own token back) or pages past [`MAX_PAGES`] ends
/// the walk with [`TicketingError::Invalid`] instead of looping forever.
pub fn paginate<'a, T, F, Fut>(query: ListQuery, fetch: F) -> PageStream<'a, T>
where
    T: PartialEq + Clone + Send + 'a,
    F: Fn(ListQuery) -> Fut + Send + Sync + 'a,
    Fut: Future<Output = Result<Page<T>>> + Send + 'a,
{
    let limit = query.limit.unwrap_or(PAGE_SIZE).max(1);
    let first = query.page.clone();
    // The state: the token of the page to fetch next (`None` once the list has ended), how many
    // pages were read, and the first and last items of the page before.
    let start = (Some(first), 0usize, None::<(T, T)>);
    let pages = stream::try_unfold(start, move |(page, read, previous)| {
        let request = page.map(|page| {
            let fut = fetch(ListQuery { limit: Some(limit), page: page.clone(), ..query.clone() });
            (page, fut)
        });
        async move {
            let Some((asked, fut)) = request else { return Ok(None) };
            if read >= MAX_PAGES {
                return Err(TicketingError::Invalid {
                    detail: format!("the helpdesk's list went on past {MAX_PAGES} pages; stopped reading it"),
                });
            }
            let Page { items, next } = fut.await?;
            // A backend that hands back the token it was given would walk the same page forever.
            if next.is_some() && next == asked {
                return Err(TicketingError::Invalid {
                    detail: format!("the helpdesk gave page {asked:?} as its own next page"),
                });
            }
            let ends = items.first().cloned().zip(items.last().cloned());
            // So would one that ignores the offset asked for and answers the first page again.
            if ends.is_some() && ends == previous {
                return Err(TicketingError::Invalid {
                    detail: format!(
                        "the helpdesk answered page {asked:?} with the same items as the page before: \
                         it ignores the paging parameters"
                    ),
                });
            }
            Ok(Some((stream::iter(items.into_iter().map(Ok)), (next.map(Some), read + 1, ends))))
        }
    });
    Box::pin(pages.try_flatten())
}

/// Every ticket matching `query`, across pages.
pub fn all_tickets<'a>(t: &'a dyn TicketReader, query: ListQuery) -> PageStream<'a, Ticket> {
    paginate(query, move |q| async move { t.list_tickets(&q).await })
}

/// Every note matching `query`, across pages.
pub fn all_notes<'a>(t: &'a dyn TicketReader, query: ListQuery) -> PageStream<'a, Note> {
    paginate(query, move |q| async move { t.list_notes(&q).await })
}

/// Collects a paged stream, stopping at the first error.
pub async fn collect_all<T>(s: PageStream<'_, T>) -> Result<Vec<T>> {
    s.try_collect().await
}

/// Counts a stream's items without keeping them.
pub async fn count_all<T>(s: PageStream<'_, T>) -> Result<usize> {
    s.try_fold(0usize, |n, _| async move { Ok(n + 1) }).await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ticketing::PageToken;

    /// A list of `total` numbers paged by offset, as Unified.to pages.
    fn by_offset(total: u32) -> impl Fn(ListQuery) -> std::future::Ready<Result<Page<u32>>> {
        move |q| {
            let start = match q.page {
                Some(PageToken::Offset(n)) => n,
                _ => 0,
            };
            let limit = q.limit.unwrap();
            let items = (start..(start + limit).min(total)).collect();
            std::future::ready(Ok(Page::by_offset(items, start, limit)))
        }
    }

    #[tokio::test]
    async fn paginate_walks_pages_until_a_short_one() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let fetch = by_offset(25);
        let s = paginate(ListQuery { limit: Some(10), ..ListQuery::default() }, move |q| {
            seen.lock().unwrap().push((q.page.clone(), q.limit));
            fetch(q)
        });
        let items = collect_all(s).await.unwrap();
        assert_eq!(items, (0..25).collect::<Vec<_>>());
        assert_eq!(
            *calls.lock().unwrap(),
            vec![
                (None, Some(10)),
                (Some(PageToken::Offset(10)), Some(10)),
                (Some(PageToken::Offset(20)), Some(10))
            ]
        );
    }

    #[tokio::test]
    async fn paginate_stops_on_first_error() {
        let s = paginate::<u32, _, _>(ListQuery::default(), |_| async {
            Err(TicketingError::Transient { detail: "boom".into() })
        });
        assert!(matches!(collect_all(s).await, Err(TicketingError::Transient { .. })));
    }

    #[tokio::test]
    async fn exact_multiple_of_page_size_asks_once_more_then_stops() {
        let calls = Arc::new(Mutex::new(0));
        let seen = calls.clone();
        let fetch = by_offset(10);
        let s = paginate(ListQuery { limit: Some(5), ..ListQuery::default() }, move |q| {
            *seen.lock().unwrap() += 1;
            fetch(q)
        });
        assert_eq!(count_all(s).await.unwrap(), 10);
        assert_eq!(*calls.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn paginate_follows_cursors_until_there_is_none() {
        let pages = |q: ListQuery| async move {
            Ok(match q.page {
                None => Page { items: vec![1, 2], next: Some(PageToken::Cursor("b".into())) },
                Some(PageToken::Cursor(c)) if c == "b" => {
                    Page { items: vec![3], next: Some(PageToken::Cursor("c".into())) }
                }
                _ => Page { items: vec![4], next: None },
            })
        };
        assert_eq!(collect_all(paginate(ListQuery::default(), pages)).await.unwrap(), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_page_that_points_to_itself_is_an_error() {
        let stuck = |q: ListQuery| async move {
            Ok(Page { items: vec![1], next: Some(q.page.unwrap_or(PageToken::Cursor("a".into()))) })
        };
        let err = collect_all(paginate(ListQuery::default(), stuck)).await.unwrap_err();
        assert!(
            matches!(&err, TicketingError::Invalid { detail } if detail.contains("own next page")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_backend_that_ignores_the_offset_is_an_error_not_a_loop() {
        let calls = Arc::new(Mutex::new(0));
        let seen = calls.clone();
        let deaf = move |q: ListQuery| {
            *seen.lock().unwrap() += 1;
            let start = match q.page {
                Some(PageToken::Offset(n)) => n,
                _ => 0,
            };
            let limit = q.limit.unwrap();
            // The first page whatever the offset, with a next token that moves on as it should.
            std::future::ready(Ok(Page::by_offset((0..limit).collect::<Vec<u32>>(), start, limit)))
        };
        let err = collect_all(paginate(ListQuery::default(), deaf)).await.unwrap_err();
        assert!(matches!(&err, TicketingError::Invalid { detail } if detail.contains("ignores")), "{err}");
        assert_eq!(*calls.lock().unwrap(), 2, "stopped at the first repeated page");
    }
}
